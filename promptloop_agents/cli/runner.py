"""What ``promptloop train`` and ``promptloop eval`` do, as functions: prepare a policy, train it, evaluate agents."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promptloop_agents.policies.baselines import (
    DEFAULT_REWRITE_TEMPLATE,
    BlankPreviews,
    IdentityAgent,
    RandomModifierAgent,
    StaticRewriteAgent,
)
from promptloop_agents.configs import (
    CONFIG_FILE,
    EnvConfig,
    EvalConfig,
    GRPOConfig,
    PolicyConfig,
    config_dict,
    parse_dtype,
    save_config,
)
from promptloop_agents.evaluation.harness import (
    EvalResult,
    episode_seeds,
    paired_difference,
    query_categories,
    run_agent,
    sample_episodes,
    uses_previews,
    write_report,
)
from promptloop_agents.policies.mllm import AGENT_FILE, MLLMAgent
from promptloop_agents.rollout import make_vector_env, num_refinements, run_episodes


def load_queries(spec: str) -> list[str]:
    """Queries from a text file (one per line) or a built-in prompt set name (``toy-user-train``, ...)."""
    path = Path(spec)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    from promptloop_env.prompts import resolve_prompts

    return list(resolve_prompts(spec, None))


def prepare_policy(
    policy: PolicyConfig,
    envs: Any,
    train_queries: list[str],
    run_dir: Path,
    seed: int,
    progress: bool,
    accelerator: Any,
) -> MLLMAgent:
    """Load the policy to train: a saved / hub policy, or the toy policy warm-started on env rollouts.

    The toy warm start runs on the main process only, is saved in ``run_dir/warm_start`` and loaded by every
    process (identical weights on every rank), and is reused when the run resumes.
    """
    settings = {**policy.sampling(), "torch_dtype": parse_dtype(policy.policy_dtype)}
    if policy.policy != "toy":
        return MLLMAgent.from_pretrained(policy.policy, is_trainable=True, **settings)
    warm = run_dir / "warm_start"
    if not (warm / AGENT_FILE).exists() and accelerator.is_main_process:
        from promptloop_agents.policies.toy_policy import SHIPPED_POLICIES

        source = SHIPPED_POLICIES.get(policy.warm_start_from, Path(policy.warm_start_from or "-"))
        if (source / AGENT_FILE).exists():
            shutil.copytree(source, warm)
        else:
            warm_start_toy_policy(policy, envs, train_queries, warm, seed, progress)
    accelerator.wait_for_everyone()
    return MLLMAgent.from_pretrained(warm, **settings)


def warm_start_toy_policy(
    policy: PolicyConfig, envs: Any, train_queries: list[str], folder: Path, seed: int, progress: bool
) -> None:
    """Build the toy policy, fit it to the rewrite teacher on env rollouts and save it (with a report)."""
    from promptloop_agents.learners.sft import collect_examples, greedy_match_rate, supervised_finetune, text_only_examples
    from promptloop_agents.policies.toy_policy import build_toy_policy
    from promptloop_agents.policies.toy_rewrites import toy_teacher

    agent = build_toy_policy(policy.toy_size, seed=seed, max_new_tokens=policy.max_new_tokens)
    rng = np.random.default_rng(seed)
    episodes = -(-policy.warm_start_episodes // envs.num_envs) * envs.num_envs
    queries = [train_queries[i] for i in rng.integers(len(train_queries), size=episodes)]
    tick = time.perf_counter()
    examples = collect_examples(envs, toy_teacher, queries, seed=seed, targets_per_observation=3)
    rollout_seconds = time.perf_counter() - tick
    per_query = policy.warm_start_text_examples
    examples += text_only_examples(train_queries, toy_teacher, per_query, num_refinements(envs), seed=seed)
    steps, lr = policy.warm_start_steps, policy.warm_start_lr
    losses = supervised_finetune(agent, examples, steps=steps, learning_rate=lr, seed=seed, progress=progress)
    report = {"examples": len(examples), "loss_first": losses[0], "loss_last": float(np.mean(losses[-20:]))}
    report.update(greedy_match=greedy_match_rate(agent, examples), rollout_seconds=rollout_seconds)
    report["sft_seconds"] = time.perf_counter() - tick - rollout_seconds
    agent.save_pretrained(folder)
    (folder / "warm_start.json").write_text(json.dumps(report, indent=2))


def train(env: EnvConfig, policy: PolicyConfig, grpo: GRPOConfig, accelerator: Any = None) -> MLLMAgent:
    """``promptloop train``: warm start (toy policy) then GRPO; saves the policy in ``output_dir/policy``.

    The resolved config goes to ``output_dir/config.yaml`` (``--config`` reads it back). The backbone and the
    rewards run on this process's device unless ``env`` places them elsewhere.
    """
    from promptloop_agents.learners.distributed import is_sharded, make_accelerator
    from promptloop_agents.learners.grpo_trainer import GRPOTrainer

    run_dir = Path(grpo.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator = accelerator or make_accelerator(grpo.report_to, str(run_dir))
    run_config = config_dict(env=env, policy=policy, grpo=grpo)
    if accelerator.is_main_process:
        save_config(run_dir / CONFIG_FILE, env=env, policy=policy, grpo=grpo)
    device = accelerator.device
    envs = make_vector_env(
        grpo.queries_per_iteration * grpo.group_size, **env.env_kwargs(grpo.refine_schedule, device)
    )
    eval_envs = None
    if grpo.eval_every:
        schedule = "uniform" if grpo.refine_schedule == "random" else grpo.refine_schedule  # explicit: kept
        eval_envs = make_vector_env(grpo.eval_queries, **env.env_kwargs(schedule, device))
    queries = load_queries(grpo.train_prompts)
    agent = prepare_policy(policy, envs, queries, run_dir, grpo.seed, grpo.progress, accelerator)
    trainer = GRPOTrainer(
        agent, grpo, envs, queries, accelerator=accelerator, eval_envs=eval_envs, run_config=run_config
    )
    trainer.train()
    # Under FSDP / ZeRO-3 every rank takes part in gathering the full weights; the main process writes them.
    state = accelerator.get_state_dict(trainer.model) if is_sharded(accelerator) else None
    if trainer.is_main:
        agent.save_pretrained(run_dir / "policy", copy_base=policy.policy == "toy", state_dict=state)
        from promptloop_agents.evaluation.plots import reward_curve

        if trainer.metrics_file.exists():
            reward_curve(trainer.metrics_file, run_dir / "reward_curve.png")
    envs.close()
    if eval_envs is not None:
        eval_envs.close()
    return agent


# -- promptloop eval --------------------------------------------------------------------------------------------

BUILTIN_AGENTS = {
    "identity": "every action is the query (plain sampling)",
    "static": "the query in --static-template (or --static-policy's one greedy a-priori rewrite), for the whole run",
    "random": "the query with random modifiers at every decision",
    "caption": "toy-compose: the query rewritten once into the world's caption template",
    "best-static": "toy-compose: per query, the best prompt of the rewrite family on --select-seeds other seeds",
    "oracle": "toy-compose: the oracle closed loop (reads previews with the exact analyser); oracle:best-static "
    "starts from the best static rewrite",
    "one-shot": "toy-compose: the best one-shot rewrite a policy can know, per category chosen on training queries "
    "(the shipped toy-compose policy's selection.json)",
    "teacher": "toy-compose: the distillation teacher (one-shot rewrite, then per category the rules chosen on "
    "training queries, reading previews with the exact analyser); teacher:keep|oracle|corrective applies that one "
    "rule set to every category at every refinement whose preview shows objects",
}
POLICY_MODES = ("closed-loop", "a-priori", "blank")


@dataclass(frozen=True)
class AgentSpec:
    """One agent of ``promptloop eval --agents``: ``[name=]target[:mode]``.

    ``target`` is a built-in name (:data:`BUILTIN_AGENTS`), a policy folder, or ``policy`` (the ``--policy``
    path); a policy's ``mode`` is ``closed-loop`` (default), ``a-priori`` (no images: every prompt follows from
    the query) or ``blank`` (closed loop on blank previews, :class:`~promptloop_agents.policies.baselines.BlankPreviews`);
    the oracle's is empty or ``best-static`` (its first prompt).
    """

    name: str
    target: str
    mode: str = ""
    policy_path: str | None = None

    @property
    def is_policy(self) -> bool:
        return self.policy_path is not None


def parse_agent_specs(text: str, policy_path: str | None = None, default_mode: str = "closed-loop") -> list[AgentSpec]:
    """The agents of a comma-separated ``--agents`` value, checked before anything is loaded.

    Args:
        text: e.g. ``"identity,best-static,runs/a/policy,blind=runs/a/policy:blank"``.
        policy_path: what ``policy`` / ``policy-a-priori`` stand for (``--policy``), or None.
        default_mode: the mode of a policy given without one (``--mode``).

    Raises:
        ValueError: an unknown agent or mode, a missing policy folder or a repeated name (named in the message).
    """
    specs: list[AgentSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, spec = item.rpartition("=")
        specs.append(_parse_spec(name.strip() or spec, spec.strip(), policy_path, default_mode))
    if not specs:
        raise ValueError("--agents is empty: name at least one agent.")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"Agent names must be unique; got {names}. Name them: 'name=spec'.")
    return specs


def _parse_spec(name: str, spec: str, policy_path: str | None, default_mode: str) -> AgentSpec:
    target, _, mode = spec.partition(":") if not Path(spec).is_dir() else (spec, "", "")
    if target == "policy-a-priori" and not mode:  # the older name of policy:a-priori
        target, mode = "policy", "a-priori"
    if target in BUILTIN_AGENTS:
        allowed = {"oracle": ("best-static",), "teacher": ("keep", "oracle", "corrective")}.get(target, ())
        if mode and mode not in allowed:
            but = f" but {', '.join(repr(m) for m in allowed)}." if allowed else "."
            raise ValueError(f"Agent {spec!r}: {target!r} takes no mode{but}")
        return AgentSpec(name, target, mode)
    if target == "policy":
        if not policy_path or policy_path == "toy":
            raise ValueError(f"Agent {spec!r} needs --policy PATH (a policy folder or hub id).")
        path = policy_path
    elif Path(target).is_dir():
        path = target
    else:
        valid = ", ".join(BUILTIN_AGENTS)
        raise ValueError(
            f"Unknown agent {spec!r}: not a built-in agent ({valid}) and no policy folder {target!r} exists. "
            "A policy is PATH, PATH:a-priori or PATH:blank; name any agent with 'name=spec'."
        )
    mode = mode or default_mode
    if mode not in POLICY_MODES:
        raise ValueError(f"Agent {spec!r}: unknown policy mode {mode!r}; valid: {', '.join(POLICY_MODES)}.")
    return AgentSpec(name, "policy", mode, str(path))


def load_policies(specs: list[AgentSpec], policy: PolicyConfig, device: str) -> dict[str, MLLMAgent]:
    """Each policy folder of ``specs`` loaded once (closed loop; the modes share its weights)."""
    sampling = {key: getattr(policy, key) for key in ("temperature", "top_k", "top_p", "do_sample")}
    dtype = parse_dtype(policy.policy_dtype)
    paths = dict.fromkeys(s.policy_path for s in specs if s.is_policy)
    return {
        path: MLLMAgent.from_pretrained(path, torch_dtype=dtype, device=device, mode="closed-loop", **sampling)
        for path in paths
    }


def build_agent(spec: AgentSpec, config: EvalConfig, policies: dict[str, MLLMAgent], best_static: Callable) -> Any:
    """The agent of ``spec``; ``best_static()`` gives ``{query: prompt}`` of the backbone under evaluation."""
    from promptloop_agents.policies import compose_reference as compose_oracle

    if spec.is_policy:
        loaded = policies[spec.policy_path]
        if spec.mode == "a-priori":
            return MLLMAgent(loaded.model, loaded.processor, **{**loaded.settings(), "mode": "a-priori"})
        return BlankPreviews(loaded, config.blank_value) if spec.mode == "blank" else loaded
    if spec.target == "identity":
        return IdentityAgent()
    if spec.target == "static":
        if config.static_policy:
            key = f"static:{config.static_policy}"  # loaded once for all backbones
            if key not in policies:
                device = config.resolved_device()
                policies[key] = MLLMAgent.from_pretrained(config.static_policy, do_sample=False, device=device)
            return StaticRewriteAgent(rewriter=lambda q, r=policies[key]: r.plan(q, [0.0])[0])
        return StaticRewriteAgent(template=config.static_template or DEFAULT_REWRITE_TEMPLATE)
    if spec.target == "random":
        return RandomModifierAgent(seed=config.seed)
    if spec.target == "caption":
        return StaticRewriteAgent(rewriter=compose_oracle.caption_rewrite)
    if spec.target == "best-static":
        return StaticRewriteAgent(rewriter=best_static().__getitem__)
    if spec.target in ("one-shot", "teacher"):
        from promptloop_agents.policies.compose_teacher import CategoryRewriteAgent, ComposeTeacher, load_selection
        from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY as shipped
        from promptloop_env.toy.compose import CATEGORIES

        if spec.target == "one-shot":
            return CategoryRewriteAgent(load_selection(shipped))
        if spec.mode:  # one rule set for every category, on every preview that shows objects
            return ComposeTeacher(load_selection(shipped), dict.fromkeys(CATEGORIES, spec.mode), min_timestep=0.0)
        rules = json.loads((shipped / "teacher_rules.json").read_text())["rules"]
        return ComposeTeacher(load_selection(shipped), rules)
    first = best_static().__getitem__ if spec.mode == "best-static" else None
    return compose_oracle.ComposeOracleAgent(first=first)


def evaluate_from_configs(
    env: EnvConfig, policy: PolicyConfig, config: EvalConfig
) -> dict[str, dict[str, EvalResult]]:
    """``promptloop eval``: parse ``config.agents``, load the policies on ``config.device`` and evaluate every agent
    on every backbone of ``env.backbone`` (comma-separated); returns ``{backbone: {agent: result}}``."""
    try:
        specs = parse_agent_specs(config.agents, policy.policy, policy.mode)
    except ValueError as err:
        raise SystemExit(f"promptloop eval: {err}") from None
    policies = load_policies(specs, policy, config.resolved_device())

    def agents_for(backbone: str, best_static: Callable) -> dict[str, Any]:
        return {s.name: build_agent(s, config, policies, best_static) for s in specs}

    extra = {"agent_specs": {s.name: dataclasses.asdict(s) for s in specs}, "policy": dataclasses.asdict(policy)}
    return evaluate_backbones(env, config, agents_for, **extra)


def run_evaluation(env: EnvConfig, config: EvalConfig, agents: dict[str, Any]) -> dict[str, EvalResult]:
    """Evaluate ready-made agents on ``env.backbone`` (the first, if several); writes what ``promptloop eval``
    writes and returns ``{agent: result}``."""
    backbone = env.backbone.split(",")[0]
    one = dataclasses.replace(env, backbone=backbone)
    return evaluate_backbones(one, config, lambda b, best_static: agents)[backbone]


def evaluate_backbones(
    env: EnvConfig, config: EvalConfig, agents_for: Callable[[str, Callable], dict[str, Any]], **extra: Any
) -> dict[str, dict[str, EvalResult]]:
    """Every agent of ``agents_for(backbone, best_static)`` on the same episodes of every backbone.

    Episode ``(query i, seed j)`` has the env seed :func:`~promptloop_agents.evaluation.harness.episode_seeds` gives
    (the same for every agent and backbone). Agents that ignore previews run on an env that decodes none (the
    final images are the same). Writes ``eval.json``, ``eval.md``, a sample grid per backbone and, for one
    backbone, the older ``metrics.json`` under ``config.output_dir``.
    """
    from tqdm.auto import tqdm

    from promptloop_env.rewards import make_reward

    started = time.perf_counter()
    queries = load_queries(config.eval_prompts)[: config.max_queries or None]
    n_seeds = config.seeds_per_query
    ep_queries = [q for q in queries for _ in range(n_seeds)]
    ep_seeds = episode_seeds(len(queries), n_seeds, config.seed).reshape(-1).tolist()
    metrics = {name: make_reward(name) for name in config.metrics.split(",") if name}
    if not metrics:
        raise ValueError("--metrics is empty: name at least one reward to score the final images with.")
    categories = query_categories(queries, config.eval_prompts, env.backbone)
    samples = sample_episodes(categories or [""] * len(queries), n_seeds, config.sample_queries)
    results: dict[str, dict[str, EvalResult]] = {}
    chosen: dict[str, dict[str, dict[str, str]]] = {}
    bar = tqdm(total=0, desc="promptloop eval", unit="episode", disable=not config.progress)
    for backbone in dict.fromkeys(b.strip() for b in env.backbone.split(",") if b.strip()):
        kwargs = dataclasses.replace(env, backbone=backbone).env_kwargs(
            config.refine_schedule, config.resolved_device()
        )
        envs: dict[bool, Any] = {}

        def envs_for(previews: bool, kwargs=kwargs, envs=envs) -> Any:
            if previews not in envs:
                settings = kwargs if previews else {**kwargs, "preview": "none"}
                envs[previews] = make_vector_env(min(config.num_envs, len(ep_queries)), **settings)
            return envs[previews]

        def best_static(backbone=backbone, envs_for=envs_for) -> dict[str, str]:
            if backbone not in chosen:
                unique = list(dict.fromkeys(queries))  # a set may word several of its queries alike
                chosen[backbone] = select_best_static(unique, envs_for(False), config, bar)
            return {q: c["prompt"] for q, c in chosen[backbone].items()}

        agents = agents_for(backbone, best_static)
        bar.total += len(agents) * len(ep_queries)
        bar.refresh()
        results[backbone] = {
            name: run_agent(
                name, agent, envs_for(uses_previews(agent)), ep_queries, ep_seeds, metrics, config.seed, bar, samples
            )
            for name, agent in agents.items()
        }
        for vector_env in envs.values():
            vector_env.close()
    bar.close()
    setup = {**dataclasses.asdict(env), **dataclasses.asdict(config), "queries": len(queries)}
    extra["seconds"] = round(time.perf_counter() - started, 1)
    write_report(Path(config.output_dir), results, setup, queries, categories, ep_seeds, samples, chosen, **extra)
    if len(results) == 1:
        write_metrics(Path(config.output_dir) / "metrics.json", next(iter(results.values())), config, env)
    return results


def select_best_static(queries: list[str], envs: Any, config: EvalConfig, bar: Any) -> dict[str, dict[str, str]]:
    """``{query: {"rewrite", "prompt"}}``: :func:`promptloop_agents.policies.compose_reference.select_best_static` with its
    selection episodes run open loop on ``envs`` (their seeds are env seeds, apart from the test episodes')."""
    from promptloop_agents.policies.compose_reference import select_best_static as select

    def rollout(sel_q: list[str], sel_prompts: list[str], sel_seeds: list[int]) -> list[Any]:
        bar.total += len(sel_q)
        finals, n = [], envs.num_envs
        for start in range(0, len(sel_q), n):
            prompts = sel_prompts[start : start + n]
            padded = prompts + [prompts[-1]] * (n - len(prompts))
            chunk = run_episodes(
                envs, lambda obs, p=padded: p, sel_q[start : start + n], sel_seeds[start : start + n], keep_images=True
            )
            finals += [e.final_image for e in chunk]
            bar.update(len(chunk))
        return finals

    picks = select(queries, rollout, config.select_seeds)
    return {q: {"rewrite": name, "prompt": prompt} for q, (name, prompt) in zip(queries, picks, strict=True)}


def write_metrics(path: Path, results: dict[str, EvalResult], config: EvalConfig, env: EnvConfig, **extra: Any):
    """``metrics.json`` (the older summary, kept for its readers): per agent, mean and t 95% CI over episodes of
    every metric; paired differences to identity."""
    payload: dict[str, Any] = {"agents": {name: r.summary() for name, r in results.items()}}
    if "identity" in results:
        payload["paired_vs_identity"] = {
            name: {m: paired_difference(r, results["identity"], m) for m in r.scores}
            for name, r in results.items()
            if name != "identity"
        }
    payload["episodes"] = len(next(iter(results.values())).episodes) if results else 0
    payload["eval"] = {"prompts": config.eval_prompts, "seeds_per_query": config.seeds_per_query, "seed": config.seed}
    payload["env"] = {**dataclasses.asdict(env), "refine_schedule": config.refine_schedule}
    payload.update(extra)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2))
    return payload

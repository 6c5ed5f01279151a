"""What ``promptloop train`` and ``promptloop eval`` do, as functions: prepare a policy, train it, evaluate agents."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from promptloop_agents.baselines import IdentityAgent, RandomModifierAgent, StaticRewriteAgent
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
from promptloop_agents.evaluation import EvalResult, evaluate, paired_difference
from promptloop_agents.mllm import AGENT_FILE, MLLMAgent
from promptloop_agents.rollout import make_vector_env, num_refinements


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
        from promptloop_agents.toy_policy import SHIPPED_TOY_POLICY

        source = SHIPPED_TOY_POLICY if policy.warm_start_from == "shipped" else Path(policy.warm_start_from or "-")
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
    from promptloop_agents.sft import collect_examples, greedy_match_rate, supervised_finetune, text_only_examples
    from promptloop_agents.toy_policy import build_toy_policy
    from promptloop_agents.toy_rewrites import toy_teacher

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
    from promptloop_agents.distributed import is_sharded, make_accelerator
    from promptloop_agents.grpo import GRPOTrainer

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
        eval_envs = make_vector_env(grpo.eval_queries, **env.env_kwargs("uniform", device))
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
        from promptloop_agents.plots import reward_curve

        if trainer.metrics_file.exists():
            reward_curve(trainer.metrics_file, run_dir / "reward_curve.png")
    envs.close()
    if eval_envs is not None:
        eval_envs.close()
    return agent


def build_agents(names: list[str], policy: MLLMAgent | None, config: EvalConfig) -> dict[str, Any]:
    """The agents to evaluate, by name: identity, static, random, policy (and policy-a-priori)."""
    agents: dict[str, Any] = {}
    for name in names:
        if name == "identity":
            agents[name] = IdentityAgent()
        elif name == "static":
            if config.static_policy:
                device = config.resolved_device()
                rewriter = MLLMAgent.from_pretrained(config.static_policy, do_sample=False, device=device)
                agents[name] = StaticRewriteAgent(rewriter=lambda q, r=rewriter: r.plan(q, [0.0])[0])
            else:
                agents[name] = StaticRewriteAgent(template=config.static_template or "{query}")
        elif name == "random":
            agents[name] = RandomModifierAgent(seed=config.seed)
        elif name in ("policy", "policy-a-priori"):
            if policy is None:
                raise ValueError(f"Agent {name!r} needs --policy.")
            agents[name] = (
                policy
                if name == "policy"
                else MLLMAgent(policy.model, policy.processor, **{**policy.settings(), "mode": "a-priori"})
            )
        else:
            raise ValueError(f"Unknown agent {name!r}; valid: identity, static, random, policy, policy-a-priori.")
    return agents


def evaluate_from_configs(env: EnvConfig, policy: PolicyConfig, config: EvalConfig) -> dict[str, EvalResult]:
    """``promptloop eval``: load the policy (when one of the agents needs it) on ``config.device`` and evaluate."""
    loaded = None
    if any(name.startswith("policy") for name in config.agents.split(",")):
        if policy.policy == "toy":
            raise SystemExit("promptloop eval: pass --policy PATH (a policy folder or hub id) to evaluate a policy.")
        sampling = {key: getattr(policy, key) for key in ("temperature", "top_k", "top_p", "mode")}
        dtype, device = parse_dtype(policy.policy_dtype), config.resolved_device()
        loaded = MLLMAgent.from_pretrained(policy.policy, torch_dtype=dtype, device=device, **sampling)
    return run_evaluation(env, config, build_agents(config.agents.split(","), loaded, config))


def run_evaluation(env: EnvConfig, config: EvalConfig, agents: dict[str, Any]) -> dict[str, EvalResult]:
    """``promptloop eval``: every agent on the same held-out episodes; writes ``metrics.json``."""
    from promptloop_env.rewards import make_reward

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    queries = load_queries(config.eval_prompts)
    if config.max_queries:
        queries = queries[: config.max_queries]
    episodes_q = [q for q in queries for _ in range(config.seeds_per_query)]
    seeds = np.random.default_rng(config.seed).integers(0, 2**31 - 1, size=len(episodes_q))
    num_envs = min(config.num_envs, len(episodes_q))
    envs = make_vector_env(num_envs, **env.env_kwargs("uniform", config.resolved_device()))
    metrics = {name: make_reward(name) for name in config.metrics.split(",") if name}
    results = evaluate(agents, envs, episodes_q, seeds, metrics, progress=config.progress, seed=config.seed)
    envs.close()
    write_metrics(out / "metrics.json", results, config, env)
    return results


def write_metrics(path: Path, results: dict[str, EvalResult], config: EvalConfig, env: EnvConfig, **extra: Any):
    """``metrics.json``: per agent, mean and 95% CI of every metric; paired differences to identity."""
    payload: dict[str, Any] = {"agents": {name: r.summary() for name, r in results.items()}}
    if "identity" in results:
        payload["paired_vs_identity"] = {
            name: {m: paired_difference(r, results["identity"], m) for m in r.scores}
            for name, r in results.items()
            if name != "identity"
        }
    payload["episodes"] = len(next(iter(results.values())).episodes) if results else 0
    payload["eval"] = {"prompts": config.eval_prompts, "seeds_per_query": config.seeds_per_query, "seed": config.seed}
    payload["env"] = {**dataclasses.asdict(env), "refine_schedule": "uniform"}
    payload.update(extra)
    path.write_text(json.dumps(payload, indent=2))
    return payload

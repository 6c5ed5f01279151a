"""``promptloop demo``: PromptLoop on the ``toy-compose`` world (GenEval's categories in miniature), on a CPU.

1. Warm start: the shipped policy that distilled the oracle closed loop from previews
   (``promptloop_agents/assets/toy-compose-policy``; a policy folder can be given instead).
2. GRPO on ``toy-compose-soft`` (train queries; refinements at steps 0, 9, 11, 13, 15 of 20; groups share their
   noise), LoRA + KL anchor, for a fixed number of iterations: the same command gives the same numbers on any
   machine (up to floating-point differences between CPUs), only the time differs.
3. Held-out evaluation (``toy-compose-test``, the same seeds for every agent, policies greedy): identity, the best
   one-shot rewrite (per category, chosen on training queries), the trained policy in a-priori mode (all prompts
   planned from the query) and closed loop; strict (GenEval's rule) and soft scores, mean and bootstrap 95% CI
   over queries, per category, paired differences.
4. Pictures: ``reward_curve.png``; ``comparison.png`` (identity, the best one-shot rewrite and the trained policy on
   one held-out query of each of the six categories); ``filmstrip.png`` (the previews the policy saw, the prompt it
   wrote at each step and what changed); ``metrics.json``; ``policy/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptloop_agents.configs import EnvConfig, save_config
from promptloop_agents.evaluation.eval_config import EvalConfig
from promptloop_agents.learners.grpo_config import GRPOConfig
from promptloop_agents.policies.policy_config import PolicyConfig


def _opt(default, help):  # noqa: A002
    return field(default=default, metadata={"help": help})


@dataclass
class DemoConfig:
    """The demo's knobs (everything else has the defaults of train and eval); ``recipes/toy-compose.yaml`` is
    the same training run without the time limit."""

    out: str = _opt("runs/demo", "Run folder.")
    backbone: str = _opt("toy-compose", "Diffusion backbone (the compositional toy world's model).")
    reward: str = _opt("toy-compose-soft", "Training reward ('name' or 'name:weight,name:weight').")
    preview: str = _opt("vae", "Preview shown to the policy: vae | latent_rgb | taesd.")
    max_steps: int = _opt(20, "GRPO iterations: the demo's budget (the recipe has 40); 0 evaluates the warm start.")
    learning_rate: float = _opt(2e-3, "LoRA learning rate of GRPO.")
    temperature: float = _opt(1.3, "Sampling temperature of the policy in training (evaluation is greedy).")
    queries_per_iteration: int = _opt(4, "Queries per GRPO iteration.")
    group_size: int = _opt(8, "Episodes per query (G); a group shares its starting noise.")
    num_inference_steps: int = _opt(20, "Denoising steps per episode.")
    refine_schedule: str = _opt("0,9,11,13,15", "Denoising steps at which the policy writes a prompt.")
    warm_start: str = _opt("toy-compose", "Warm start: the shipped distilled policy (toy-compose) or a policy folder.")
    train_prompts: str = _opt("toy-compose-train", "Training queries.")
    eval_prompts: str = _opt("toy-compose-test", "Held-out queries (combinations never trained on).")
    eval_queries: int = _opt(120, "Held-out queries, drawn across the six categories (0 = all of eval_prompts).")
    seeds_per_query: int = _opt(2, "Evaluation episodes (noise seeds) per held-out query.")
    seed: int = _opt(0, "Seed of the whole demo.")
    progress: bool = _opt(True, "Show progress bars.")


def _median(rows: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rows])) if rows else float("nan")


def demo_configs(config: DemoConfig) -> tuple[EnvConfig, PolicyConfig, GRPOConfig, EvalConfig]:
    """The train and eval configs the demo runs with (``recipes/toy-compose.yaml`` holds the same training run)."""
    out = Path(config.out)
    env = EnvConfig(
        backbone=config.backbone,
        reward=config.reward,
        preview=config.preview,
        num_inference_steps=config.num_inference_steps,
        num_refinements=len(config.refine_schedule.split(",")),
    )
    policy = PolicyConfig(
        toy_size="compose", warm_start_from=config.warm_start, max_new_tokens=32, temperature=config.temperature
    )
    grpo = GRPOConfig(
        output_dir=str(out),
        train_prompts=config.train_prompts,
        max_steps=config.max_steps,
        queries_per_iteration=config.queries_per_iteration,
        group_size=config.group_size,
        same_noise=True,
        beta=0.04,  # the demo's KL coefficient (GRPOConfig's default is TRL's, 0)
        learning_rate=config.learning_rate,
        micro_batch_size=config.queries_per_iteration * config.group_size,  # one decision point per forward
        refine_schedule=config.refine_schedule,
        seed=config.seed,
        progress=config.progress,
    )
    evaluation = EvalConfig(
        output_dir=str(out),
        eval_prompts=config.eval_prompts,
        max_queries=config.eval_queries,
        seeds_per_query=config.seeds_per_query,
        metrics="toy-compose,toy-compose-soft",
        seed=config.seed + 1,
        progress=config.progress,
    )
    return env, policy, grpo, evaluation


AGENT_NAMES = {
    "identity": "identity (the query as is)",
    "best_one_shot_rewrite": "best one-shot rewrite",
    "policy_a_priori": "PromptLoop, a priori",
    "policy_closed_loop": "PromptLoop, closed loop",
}
"""The demo's agents (the keys of ``metrics.json``) and their names in the printed table and the pictures."""


def demo_agents(run_dir: Path, trained: Any) -> dict[str, Any]:
    """The demo's held-out contestants: identity, the best one-shot rewrite, the trained policy a priori and
    closed loop (both greedy, so that the comparison is between policies, not sampling noise)."""
    from promptloop_agents.policies.baselines import IdentityAgent
    from promptloop_agents.policies.compose_teacher import CategoryRewriteAgent, load_selection
    from promptloop_agents.policies.mllm import MLLMAgent

    settings = {**trained.settings(), "do_sample": False}
    return {
        "identity": IdentityAgent(),
        "best_one_shot_rewrite": CategoryRewriteAgent(load_selection(run_dir / "warm_start")),
        "policy_a_priori": MLLMAgent(trained.model, trained.processor, **{**settings, "mode": "a-priori"}),
        "policy_closed_loop": MLLMAgent(trained.model, trained.processor, **settings),
    }


def evaluate_demo(env: EnvConfig, evaluation: EvalConfig, schedule: str, agents: dict[str, Any]) -> dict[str, Any]:
    """Every agent on the same held-out (query, noise seed) episodes; bootstrap CIs over queries."""
    from promptloop_agents.evaluation.harness import evaluate, paired_differences, query_means
    from promptloop_agents.evaluation.suite import eval_queries
    from promptloop_agents.rollout import make_vector_env
    from promptloop_env.rewards import make_reward
    from promptloop_env.stats import bootstrap_ci, rounded

    queries, categories = eval_queries(evaluation, env.backbone)
    k = evaluation.seeds_per_query
    episodes_q = [q for q in queries for _ in range(k)]
    seeds = [evaluation.seed * 1_000_003 + 1000 * s + i for i in range(len(queries)) for s in range(k)]
    envs = make_vector_env(min(evaluation.num_envs, len(episodes_q)), **env.env_kwargs(schedule))
    metrics = {name: make_reward(name) for name in evaluation.metrics.split(",")}
    results = evaluate(agents, envs, episodes_q, seeds, metrics, progress=evaluation.progress, seed=evaluation.seed)
    envs.close()
    labels = np.array(categories or ["all"] * len(queries))
    summary: dict[str, Any] = {}
    for name, result in results.items():
        summary[name] = {}
        for metric, scores in result.scores.items():
            values = query_means(scores, k)
            row = rounded(bootstrap_ci(values))
            row["by_category"] = {c: round(float(values[labels == c].mean()), 4) for c in dict.fromkeys(labels)}
            summary[name][metric] = row
    pairs = [("policy_closed_loop", other) for other in results if other != "policy_closed_loop"]
    by_metric = {m: paired_differences(results, m, k, pairs) for m in metrics}
    paired = {f"{a} - {b}": {m: by_metric[m][f"{a} - {b}"] for m in metrics} for a, b in pairs}
    out = {"results": results, "agents": summary, "paired": paired, "queries": len(queries), "seeds_per_query": k}
    return {**out, "categories": list(labels), "sampling": "greedy (every policy answers its most likely prompt)"}


def replay_with_previews(env: EnvConfig, schedule: str, agent: Any, episodes: list, picks: list[int]) -> list:
    """The picked (query, noise seed) episodes run again by ``agent`` with every preview kept (for filmstrips;
    the env's replay guarantee makes them the evaluated episodes when the agent is deterministic)."""
    from promptloop_agents.evaluation.harness import agent_act_fn
    from promptloop_agents.rollout import make_vector_env, run_episodes

    envs = make_vector_env(len(picks), **env.env_kwargs(schedule))
    again = run_episodes(
        envs, agent_act_fn(agent), [episodes[i].query for i in picks], [episodes[i].seed for i in picks], True
    )
    envs.close()
    return again


def filmstrip_picks(episodes: list, count: int = 3) -> list[int]:
    """Episodes for the filmstrip: first those where the closed loop changed its prompt after seeing a preview
    (a different category each, as far as they go), then any."""
    from promptloop_env.toy.compose_spec import parse

    changed = [i for i, e in enumerate(episodes) if len(set(e.prompts[1:])) > 1]
    picks: list[int] = []
    seen: set[str] = set()
    for i in changed:
        category = parse(episodes[i].query).category
        if category not in seen:
            picks.append(i)
            seen.add(category)
    rest = [i for i in changed + list(range(len(episodes))) if i not in picks]
    return (picks + rest)[:count]


def run_demo(config: DemoConfig) -> dict:
    """Run the demo; returns the ``metrics.json`` payload."""
    from promptloop_agents.cli.train import train
    from promptloop_agents.evaluation.plots import comparison_grid, filmstrip

    start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    env, policy, grpo, evaluation = demo_configs(config)
    save_config(out / "demo_config.yaml", demo=config, env=env, policy=policy, grpo=grpo, eval=evaluation)
    trained = train(env, policy, grpo)
    train_seconds = time.perf_counter() - start
    agents = demo_agents(out, trained)
    evaluated = evaluate_demo(env, evaluation, config.refine_schedule, agents)
    results = evaluated.pop("results")
    categories = evaluated.pop("categories")
    metrics_file = out / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines()] if metrics_file.exists() else []
    timing = {
        "iterations": len(rows),
        "episodes_per_iteration": config.queries_per_iteration * config.group_size,
        "median_seconds_per_iteration": _median(rows, "time_iteration"),
        "median_seconds_denoise": _median(rows, "time_denoise"),
        "median_seconds_generate": _median(rows, "time_generate"),
        "median_seconds_update": _median(rows, "time_update"),
        "train_seconds": train_seconds,
    }
    rewards = np.array([r["reward_mean"] for r in rows]) if rows else np.array([np.nan])
    curve = {"first_10": float(rewards[:10].mean()), "last_10": float(rewards[-10:].mean())}
    payload = {**evaluated, "training": timing, "training_reward": curve, "policy": "policy", "config": str(config)}

    k = config.seeds_per_query
    closed = results["policy_closed_loop"].episodes
    picks = filmstrip_picks(closed)
    replay = replay_with_previews(env, config.refine_schedule, agents["policy_closed_loop"], closed, picks)
    filmstrip(replay, out / "filmstrip.png", ["PromptLoop, closed loop"] * len(replay), config.num_inference_steps)
    columns = [categories.index(c) * k for c in dict.fromkeys(categories)]  # seed 0 of each category's first query
    shown = {AGENT_NAMES[n]: results[n].episodes for n in ("identity", "best_one_shot_rewrite", "policy_closed_loop")}
    comparison_grid(
        shown,
        columns,
        out / "comparison.png",
        column_labels=[f"{categories[i // k]}: {closed[i].query}" for i in columns],
        title=f"Held-out queries, one per category (final images; reward = {config.reward}, the same noise per "
        "column)",
    )
    timing["demo_seconds"] = time.perf_counter() - start
    (out / "metrics.json").write_text(json.dumps(payload, indent=2))
    print(summary_table(payload))
    return payload


def summary_table(payload: dict) -> str:
    """The demo's printed table (what the README cites): per agent strict and soft score, the strict score per
    category, the paired differences of the closed loop, and the training budget."""
    n, k = payload["queries"], payload["seeds_per_query"]
    agents = payload["agents"]
    categories = list(next(iter(agents.values()))["toy-compose"]["by_category"])
    lines = [
        "",
        f"Held-out toy-compose queries: {n} (across {len(categories)} categories) x {k} noise seeds, the same "
        "episodes for every agent; policies greedy.",
        "strict = GenEval's rule (1 if every object, count, colour and position is right), soft = the fraction "
        "right; mean [95% bootstrap CI over queries].",
        "",
        f"| {'agent':26s} | {'strict':22s} | {'soft':22s} |",
        f"|{'-' * 28}|{'-' * 24}|{'-' * 24}|",
    ]
    for name, summary in agents.items():
        cells = [_ci(summary[m]) for m in ("toy-compose", "toy-compose-soft")]
        lines.append(f"| {AGENT_NAMES.get(name, name):26s} | {cells[0]:22s} | {cells[1]:22s} |")
    lines += ["", "strict score per category:", ""]
    lines.append(f"| {'agent':26s} | " + " | ".join(f"{c:13s}" for c in categories) + " |")
    lines.append(f"|{'-' * 28}|" + "|".join("-" * 15 for _ in categories) + "|")
    for name, summary in agents.items():
        row = summary["toy-compose"]["by_category"]
        lines.append(
            f"| {AGENT_NAMES.get(name, name):26s} | " + " | ".join(f"{row[c]:13.3f}" for c in categories) + " |"
        )
    lines.append("")
    for pair, diff in payload["paired"].items():
        a, b = (AGENT_NAMES.get(x, x) for x in pair.split(" - "))
        lines.append(f"{a} minus {b}: strict {_ci(diff['toy-compose'], signed=True)}")
    timing, curve = payload["training"], payload["training_reward"]
    lines.append(
        f"GRPO: {timing['iterations']} iterations of {timing['episodes_per_iteration']} episodes, training reward "
        f"{curve['first_10']:.3f} (first 10) -> {curve['last_10']:.3f} (last 10); median "
        f"{timing['median_seconds_per_iteration']:.1f} s per iteration; the demo took {timing['demo_seconds']:.0f} s."
    )
    return "\n".join(lines)


def _ci(summary: dict, signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"{fmt.format(summary['mean'])} [{fmt.format(summary['ci_low'])}, {fmt.format(summary['ci_high'])}]"

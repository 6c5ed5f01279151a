"""``promptloop demo``: PromptLoop on the ``toy-compose`` world (GenEval's categories in miniature), on a CPU.

1. Warm start: the shipped policy that distilled the oracle closed loop from previews
   (``promptloop_agents/assets/toy-compose-policy``; ``--warm_start train`` re-does the toy-shapes warm start instead).
2. GRPO on ``toy-compose-soft`` (train queries; refinements at steps 0, 9, 11, 13, 15 of 20; groups share their
   noise), LoRA + KL anchor.
3. Held-out evaluation (``toy-compose-test``, same seeds for every agent): identity, the best one-shot rewrite
   (per category, chosen on training queries), the trained policy in a-priori mode (all prompts planned from the
   query) and closed loop; strict (GenEval's rule) and soft scores, mean and bootstrap 95% CI over queries, paired
   differences.
4. Pictures: reward curve, filmstrip of previews with the prompts written under them, before/after grid;
   ``metrics.json``; ``policy/``.
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
    max_steps: int = _opt(200, "GRPO iterations at most.")
    max_train_seconds: float = _opt(150.0, "Stop GRPO after this wall time (the demo's budget; the recipe has 900).")
    learning_rate: float = _opt(2e-3, "LoRA learning rate of GRPO.")
    temperature: float = _opt(1.3, "Sampling temperature of the policy in training (evaluation is greedy).")
    queries_per_iteration: int = _opt(4, "Queries per GRPO iteration.")
    group_size: int = _opt(8, "Episodes per query (G); a group shares its starting noise.")
    num_inference_steps: int = _opt(20, "Denoising steps per episode.")
    refine_schedule: str = _opt("0,9,11,13,15", "Denoising steps at which the policy writes a prompt.")
    warm_start: str = _opt("toy-compose", "Warm start: a shipped name (toy-compose, shipped) or a policy folder.")
    train_prompts: str = _opt("toy-compose-train", "Training queries.")
    eval_prompts: str = _opt("toy-compose-test", "Held-out queries (combinations never trained on).")
    eval_queries: int = _opt(120, "Held-out queries used (0 = all of eval_prompts).")
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
        preview_size=64,
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
        max_train_seconds=config.max_train_seconds,
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
    from promptloop_agents.evaluation.harness import evaluate, paired_differences, query_categories, query_means
    from promptloop_agents.rollout import load_queries, make_vector_env
    from promptloop_env.rewards import make_reward
    from promptloop_env.stats import bootstrap_ci, rounded

    queries = load_queries(evaluation.eval_prompts)
    queries = queries[: evaluation.max_queries] if evaluation.max_queries else queries
    k = evaluation.seeds_per_query
    episodes_q = [q for q in queries for _ in range(k)]
    seeds = [evaluation.seed * 1_000_003 + 1000 * s + i for i in range(len(queries)) for s in range(k)]
    envs = make_vector_env(min(evaluation.num_envs, len(episodes_q)), **env.env_kwargs(schedule))
    metrics = {name: make_reward(name) for name in evaluation.metrics.split(",")}
    results = evaluate(agents, envs, episodes_q, seeds, metrics, progress=evaluation.progress, seed=evaluation.seed)
    envs.close()
    categories = np.array(query_categories(queries, evaluation.eval_prompts, env.backbone) or ["all"] * len(queries))
    summary: dict[str, Any] = {}
    for name, result in results.items():
        summary[name] = {}
        for metric, scores in result.scores.items():
            values = query_means(scores, k)
            row = rounded(bootstrap_ci(values))
            row["by_category"] = {
                c: round(float(values[categories == c].mean()), 4) for c in dict.fromkeys(categories)
            }
            summary[name][metric] = row
    pairs = [("policy_closed_loop", other) for other in results if other != "policy_closed_loop"]
    by_metric = {m: paired_differences(results, m, k, pairs) for m in metrics}
    paired = {f"{a} - {b}": {m: by_metric[m][f"{a} - {b}"] for m in metrics} for a, b in pairs}
    return {"results": results, "agents": summary, "paired": paired, "queries": len(queries), "seeds_per_query": k}


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


def run_demo(config: DemoConfig) -> dict:
    """Run the demo; returns the ``metrics.json`` payload."""
    from promptloop_agents.cli.train import train
    from promptloop_agents.evaluation.plots import before_after_grid, filmstrip

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
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timing = {
        "iterations": len(rows),
        "episodes_per_iteration": config.queries_per_iteration * config.group_size,
        "median_seconds_per_iteration": _median(rows, "time_iteration"),
        "median_seconds_denoise": _median(rows, "time_denoise"),
        "median_seconds_generate": _median(rows, "time_generate"),
        "median_seconds_update": _median(rows, "time_update"),
        "train_seconds": train_seconds,
        "demo_seconds": time.perf_counter() - start,
    }
    rewards = np.array([r["reward_mean"] for r in rows])
    curve = {"first_10": float(rewards[:10].mean()), "last_10": float(rewards[-10:].mean())}
    payload = {**evaluated, "training": timing, "training_reward": curve, "policy": "policy", "config": str(config)}
    (out / "metrics.json").write_text(json.dumps(payload, indent=2))

    baseline, policy_result = results["best_one_shot_rewrite"].episodes, results["policy_closed_loop"].episodes
    k = config.seeds_per_query
    changed = [i for i, e in enumerate(policy_result) if len(set(e.prompts[1:])) > 1]  # the loop acted on a preview
    picks = (changed + [i for i in range(len(policy_result)) if i not in changed])[:3]
    replay = replay_with_previews(env, config.refine_schedule, agents["policy_closed_loop"], policy_result, picks)
    filmstrip(replay, out / "filmstrip.png", labels=["trained policy, closed loop"] * len(replay))
    grid = list(range(0, min(8 * k, len(baseline)), k))
    before_after_grid(
        [baseline[i] for i in grid],
        [policy_result[i] for i in grid],
        out / "before_after.png",
        names=("best one-shot rewrite", "PromptLoop (closed loop)"),
    )
    _print_summary(payload)
    return payload


def _print_summary(payload: dict) -> None:
    print(f"\nheld-out results: {payload['queries']} queries x {payload['seeds_per_query']} seeds (mean [95% CI])")
    for name, summary in payload["agents"].items():
        cells = [f"{m} {s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]" for m, s in summary.items()]
        print(f"  {name:22s} " + "   ".join(cells))
    for name, diff in payload["paired"].items():
        strict = diff["toy-compose"]
        print(f"  {name:45s} strict {strict['mean']:+.3f} [{strict['ci_low']:+.3f}, {strict['ci_high']:+.3f}]")
    timing, curve = payload["training"], payload["training_reward"]
    print(
        f"GRPO: {timing['iterations']} iterations, median {timing['median_seconds_per_iteration']:.1f} s/iteration; "
        f"training reward first 10 {curve['first_10']:.3f}, last 10 {curve['last_10']:.3f}; "
        f"demo took {timing['demo_seconds']:.0f} s"
    )

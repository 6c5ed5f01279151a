"""``promptloop demo``: PromptLoop on the toy world, end to end on a CPU.

1. Warm start: the toy policy imitates a varied rewrite teacher on env rollouts (train queries).
2. GRPO on ``toy-fidelity`` with a random refinement schedule (train queries), LoRA + KL anchor.
3. Held-out evaluation (test queries, uniform schedule, same seeds for every agent): identity, static rewrite
   (the warm-start policy's one greedy rewrite of the query, used for the whole trajectory), the warm-start
   policy and the trained policy; ``toy-fidelity`` and the held-out ``toy-aesthetic``, mean and 95% CI.
4. Pictures: reward curve, trajectory filmstrip, before/after grid; ``metrics.json``; ``policy/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from promptloop_agents.configs import EnvConfig, EvalConfig, GRPOConfig, PolicyConfig, save_config


def _opt(default, help):  # noqa: A002
    return field(default=default, metadata={"help": help})


@dataclass
class DemoConfig:
    """The demo's knobs (everything else has the defaults of train and eval)."""

    out: str = _opt("runs/demo", "Run folder.")
    backbone: str = _opt("toy-shapes", "Diffusion backbone (the toy world's model).")
    reward: str = _opt("toy-fidelity", "Training reward ('name' or 'name:weight,name:weight').")
    preview: str = _opt("latent_rgb", "Preview shown to the policy: vae | latent_rgb (nearly free) | taesd.")
    max_steps: int = _opt(200, "GRPO iterations at most.")
    max_train_seconds: float = _opt(480.0, "Stop GRPO after this wall time (the warm start is not counted).")
    learning_rate: float = _opt(1e-3, "LoRA learning rate of GRPO.")
    queries_per_iteration: int = _opt(4, "Queries per GRPO iteration.")
    group_size: int = _opt(4, "Episodes per query (G).")
    num_inference_steps: int = _opt(10, "Denoising steps per episode.")
    num_refinements: int = _opt(5, "Prompts the agent writes per episode.")
    toy_size: str = _opt("small", "Toy policy size: tiny | small.")
    warm_start_episodes: int = _opt(64, "Episodes rolled out with the teacher for the warm start.")
    warm_start_steps: int = _opt(600, "Supervised warm-start steps.")
    warm_start: str = _opt("shipped", "shipped (the package's warm-started toy policy, if present) | train (now).")
    train_prompts: str = _opt("toy-user-train", "Training queries (users' wordings of the toy world).")
    eval_prompts: str = _opt("toy-user-test", "Held-out queries (the same wordings, other attribute combinations).")
    eval_queries: int = _opt(100, "Held-out queries used (0 = all of eval_prompts).")
    seeds_per_query: int = _opt(1, "Evaluation episodes per held-out query.")
    seed: int = _opt(0, "Seed of the whole demo.")
    progress: bool = _opt(True, "Show progress bars.")


def _median(rows: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rows])) if rows else float("nan")


def demo_configs(config: DemoConfig) -> tuple[EnvConfig, PolicyConfig, GRPOConfig, EvalConfig]:
    """The train and eval configs the demo runs with (``recipes/toy.yaml`` holds the same training run)."""
    out = Path(config.out)
    env = EnvConfig(
        backbone=config.backbone,
        reward=config.reward,
        preview=config.preview,
        num_inference_steps=config.num_inference_steps,
        num_refinements=config.num_refinements,
    )
    policy = PolicyConfig(
        toy_size=config.toy_size,
        warm_start_episodes=config.warm_start_episodes,
        warm_start_steps=config.warm_start_steps,
        warm_start_from="shipped" if config.warm_start == "shipped" else "",
    )
    grpo = GRPOConfig(
        output_dir=str(out),
        train_prompts=config.train_prompts,
        max_steps=config.max_steps,
        max_train_seconds=config.max_train_seconds,
        queries_per_iteration=config.queries_per_iteration,
        group_size=config.group_size,
        learning_rate=config.learning_rate,
        micro_batch_size=config.queries_per_iteration * config.group_size,  # one decision point per forward
        seed=config.seed,
        progress=config.progress,
    )
    evaluation = EvalConfig(
        output_dir=str(out),
        eval_prompts=config.eval_prompts,
        max_queries=config.eval_queries,
        seeds_per_query=config.seeds_per_query,
        seed=config.seed + 1,
        progress=config.progress,
    )
    return env, policy, grpo, evaluation


def run_demo(config: DemoConfig) -> dict:
    """Run the demo; returns the ``metrics.json`` payload."""
    from promptloop_agents import runner
    from promptloop_agents.baselines import IdentityAgent, StaticRewriteAgent
    from promptloop_agents.mllm import MLLMAgent
    from promptloop_agents.plots import before_after_grid, filmstrip

    start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    env, policy, grpo, evaluation = demo_configs(config)
    save_config(out / "demo_config.yaml", demo=config, env=env, policy=policy, grpo=grpo, eval=evaluation)
    trained = runner.train(env, policy, grpo)
    train_seconds = time.perf_counter() - start

    warm = MLLMAgent.from_pretrained(out / "warm_start", temperature=policy.temperature)
    rewriter = MLLMAgent.from_pretrained(out / "warm_start", do_sample=False)
    agents = {
        "identity": IdentityAgent(),
        "static_rewrite": StaticRewriteAgent(rewriter=lambda q: rewriter.plan(q, [0.0])[0]),
        "warm_start_policy": warm,
        "trained_policy": trained,
    }
    results = runner.run_evaluation(env, evaluation, agents)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timing = {
        "iterations": len(rows),
        "episodes_per_iteration": config.queries_per_iteration * config.group_size,
        "median_seconds_per_iteration": _median(rows, "time_iteration"),
        "median_seconds_denoise": _median(rows, "time_denoise"),
        "median_seconds_generate": _median(rows, "time_generate"),
        "median_seconds_update": _median(rows, "time_update"),
        "train_seconds_including_warm_start": train_seconds,
        "demo_seconds": time.perf_counter() - start,
    }
    curve = {"first_10": float(np.mean([r["reward_mean"] for r in rows[:10]]))}
    curve["last_10"] = float(np.mean([r["reward_mean"] for r in rows[-10:]]))
    payload = runner.write_metrics(
        out / "metrics.json",
        results,
        evaluation,
        env,
        training=timing,
        training_reward=curve,
        policy="policy",
    )

    identity, policy_result = results["identity"].episodes, results["trained_policy"].episodes
    picks = list(range(min(4, len(identity))))
    strip = [e for i in picks for e in (identity[i], policy_result[i])]
    filmstrip(strip, out / "filmstrip.png", labels=[n for _ in picks for n in ("identity", "trained policy")])
    grid = list(range(min(8, len(identity))))
    before_after_grid(
        [identity[i] for i in grid],
        [policy_result[i] for i in grid],
        out / "before_after.png",
        names=("identity (before)", "trained policy (after)"),
    )
    _print_summary(payload)
    return payload


def _print_summary(payload: dict) -> None:
    print("\nheld-out results (mean [95% CI])")
    for name, summary in payload["agents"].items():
        cells = [
            f"{m} {s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"
            for m, s in summary.items()
            if isinstance(s, dict)
        ]
        print(f"  {name:18s} " + "   ".join(cells))
    timing = payload["training"]
    print(
        f"GRPO: {timing['iterations']} iterations, median {timing['median_seconds_per_iteration']:.2f} s/iteration "
        f"(denoise {timing['median_seconds_denoise']:.2f}, generate {timing['median_seconds_generate']:.2f}, "
        f"update {timing['median_seconds_update']:.2f}); demo took {timing['demo_seconds']:.0f} s"
    )

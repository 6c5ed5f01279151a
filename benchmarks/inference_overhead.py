"""Inference overhead of PromptLoop: seconds per image at 0, 1, 3 and 5 refinements, policy included.

Run: ``OMP_NUM_THREADS=1 python benchmarks/inference_overhead.py [--policy FOLDER] [--num-envs 8] [--repeats 7]``

On ``toy-compose`` (``--steps`` 20 denoising steps, previews at ``--preview-size``), a batch of ``--num-envs``
episodes (one query each, fixed noise seeds) is produced in each of these settings:

* ``0 refinements``: plain sampling with the query (one action, the query, at step 0; no previews, no
  policy): what a user runs without PromptLoop;
* ``closed loop, k refinements`` (k = 1, 3, 5): the policy writes a prompt at each of k refinement points,
  seeing the preview (decoded x0 estimate) each time; one batched policy call per refinement point;
* ``a priori, k refinements``: the policy plans all k prompts from the query before sampling (k batched
  calls without images), then the env samples with them and decodes no previews.

Refinement points: uniform for 1 and 3, ``0,9,11,13,15`` for 5 (the toy-compose learner's). The reward is a
constant (not timed: it is the same for every setting and not part of inference). The policy is
``--policy`` (default: ``promptloop_agents/assets/toy-compose-policy`` when it exists, else the shipped toy policy).

Every repeat runs all settings one after the other, so load from other processes hits all of them alike;
one warm-up round is not timed. Reported per setting: the median wall-clock seconds per image over
``--repeats`` (policy and env parts too) and its ratio to the median of ``0 refinements``, and the same for
the process's CPU seconds, which a loaded shared machine distorts less (with ``OMP_NUM_THREADS=1`` the
process computes on one core, so CPU seconds are the wall time it would take alone). Writes
``benchmarks/results/inference_overhead.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promptloop_agents.evaluation.harness import agent_act_fn
from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.toy_policy import SHIPPED_TOY_POLICY
from promptloop_agents.rollout import RolloutTimes, make_vector_env, run_episodes
from promptloop_env.prompts import resolve_prompts
from promptloop_env.schedule import refinement_steps, validate_schedule

RESULTS = Path(__file__).resolve().parent / "results"
COMPOSE_POLICY = SHIPPED_TOY_POLICY.parent / "toy-compose-policy"
SCHEDULES = {1: "uniform", 3: "uniform", 5: "0,9,11,13,15"}


def no_reward(images: np.ndarray, queries: list[str]) -> list[float]:
    """A constant reward: scoring is not part of inference."""
    return [0.0] * len(images)


def planned_act(policy: MLLMAgent, queries: list[str], timesteps: list[float]) -> Callable[[list[dict]], list[str]]:
    """A priori: all prompts of every episode planned from the query (one batched call per refinement point,
    no images) before sampling; the returned ``act`` plays them back by segment."""
    plan: list[list[str]] = []
    prompts = list(queries)
    for segment, timestep in enumerate(timesteps):
        observations = [
            {"query": q, "prompt": p, "timestep": timestep, "segment": segment}
            for q, p in zip(queries, prompts, strict=True)
        ]
        prompts = policy.sample(observations, with_images=False).prompts
        plan.append(prompts)
    return lambda observations: plan[int(np.asarray(observations[0]["segment"]).reshape(-1)[0])]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the results written to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_policy = COMPOSE_POLICY if COMPOSE_POLICY.is_dir() else SHIPPED_TOY_POLICY
    parser.add_argument("--policy", default=os.path.relpath(default_policy), help="policy folder")
    parser.add_argument("--backbone", default="toy-compose")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--refinements", default="1,3,5", help="closed-loop / a-priori refinement counts")
    parser.add_argument("--num-envs", type=int, default=8, help="episodes per batch")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--preview-size", type=int, default=64)
    parser.add_argument("--prompt-set", default="toy-compose-test")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS / "inference_overhead.json"))
    args = parser.parse_args(argv)

    all_queries = list(resolve_prompts(args.prompt_set, None))
    stride = max(1, len(all_queries) // args.num_envs)
    queries = all_queries[::stride][: args.num_envs]  # spread over the set's categories
    seeds = list(range(len(queries)))
    closed = MLLMAgent.from_pretrained(args.policy, device=args.device, mode="closed-loop")
    prior = MLLMAgent(closed.model, closed.processor, **{**closed.settings(), "mode": "a-priori"})
    base = dict(
        backbone=args.backbone,
        reward=no_reward,
        num_inference_steps=args.steps,
        preview_size=args.preview_size,
        device=args.device,
    )

    settings: dict[str, tuple[Any, Callable[[], Callable], int]] = {}
    envs = make_vector_env(len(queries), num_refinements=1, preview="none", **base)
    settings["0 refinements"] = (envs, lambda: lambda obs: [str(o["query"]) for o in obs], 0)
    for k in (int(x) for x in args.refinements.split(",")):
        kwargs = dict(base, num_refinements=k, refine_schedule=SCHEDULES.get(k, "uniform"))
        loop_envs = make_vector_env(len(queries), preview="vae", **kwargs)
        settings[f"closed loop, {k} refinements"] = (loop_envs, lambda: agent_act_fn(closed), k)
        plan_envs = make_vector_env(len(queries), preview="none", **kwargs)
        schedule = validate_schedule(kwargs["refine_schedule"], args.steps, k)
        timesteps = [s / args.steps for s in refinement_steps(schedule, args.steps, k, np.random.default_rng(0))]
        settings[f"a priori, {k} refinements"] = (
            plan_envs,
            lambda t=timesteps: planned_act(prior, queries, t),
            k,
        )

    times: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in settings}
    for repeat in range(args.repeats + 1):  # round 0 warms up
        for name, (vector_env, make_act, _) in settings.items():
            closed.reset(seed=repeat)
            split = RolloutTimes()
            cpu_start, start = time.process_time(), time.perf_counter()
            act = make_act()  # a priori: the planning, before sampling
            plan_seconds = time.perf_counter() - start
            run_episodes(vector_env, act, queries, seeds, times=split)
            total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            if repeat:
                times[name].append((total, split.policy + plan_seconds, split.env, cpu))
        print(f"round {repeat}/{args.repeats} done", flush=True)
    for vector_env, _, _ in settings.values():
        vector_env.close()

    n = len(queries)
    medians = {name: statistics.median(t[0] for t in rows) / n for name, rows in times.items()}
    reference = medians["0 refinements"]
    cpu_medians = {name: statistics.median(t[3] for t in rows) / n for name, rows in times.items()}
    rows = []
    for name, (_, _, k) in settings.items():
        rows.append(
            {
                "setting": name,
                "refinements": k,
                "median_s_per_image": round(medians[name], 5),
                "ratio_to_0_refinements": round(medians[name] / reference, 3),
                "median_policy_s_per_image": round(statistics.median(t[1] for t in times[name]) / n, 5),
                "median_env_s_per_image": round(statistics.median(t[2] for t in times[name]) / n, 5),
                "median_cpu_s_per_image": round(cpu_medians[name], 5),
                "cpu_ratio_to_0_refinements": round(cpu_medians[name] / cpu_medians["0 refinements"], 3),
                "repeats_s_per_batch": [round(t[0], 4) for t in times[name]],
            }
        )
    out = {
        "config": {**vars(args), "queries": queries, "noise_seeds": seeds, "schedules": SCHEDULES},
        "machine": {
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(),
        },
        "policy_parameters": sum(p.numel() for p in closed.model.parameters()),
        "results": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print_table(out)
    return out


def print_table(out: dict[str, Any]) -> None:
    """Seconds per image and ratios, one row per setting."""
    print(
        "| setting | s / image (median) | x 0 refinements | policy s / image | env s / image | CPU s / image | x 0 |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in out["results"]:
        print(
            f"| {r['setting']} | {r['median_s_per_image']:.4f} | {r['ratio_to_0_refinements']:.2f} | "
            f"{r['median_policy_s_per_image']:.4f} | {r['median_env_s_per_image']:.4f} | "
            f"{r['median_cpu_s_per_image']:.4f} | {r['cpu_ratio_to_0_refinements']:.2f} |"
        )


if __name__ == "__main__":
    main()

"""Headroom of the ``toy-compose`` world: does reading the previews beat the best prompt written up front?

Run: ``python benchmarks/toy_compose_headroom.py [--backbone toy-compose] [--seeds 8] [--select-seeds 4]``

Agents, on the held-out ``toy-compose-test`` queries (20 per GenEval category), each query on the same
``--seeds`` noise seeds for every agent (episode ``(i, s)`` uses noise seed ``TEST_SEED0 + 1000 s + i``):

- ``identity``: every action is the query;
- ``caption_rewrite`` (on request; on users' wordings, ``--prompt-set toy-compose-user-test``): the query
  rewritten once into the caption template (a fixed rewrite);
- ``best_static_rewrite``: per query, the best prompt of the rewrite family
  (:data:`...compose_reference.REWRITES`: template, reordered, doubled, objects restated, counts
  up or down, background first), chosen by its mean strict score on ``--select-seeds`` other seeds, then applied
  unchanged for the whole trajectory on the test seeds: the strongest open-loop baseline;
- ``oracle_closed_loop``: starts from the best static rewrite, then at every refinement point reads the preview
  with the exact analyser (privileged) and rewrites by rules
  (:func:`promptloop_agents.policies.compose_reference.oracle_prompt`).

Reported: strict (GenEval's rule) and soft scores with bootstrap 95% CIs over queries (each query's mean over
its seeds is one unit, so seeds of one query are not counted as independent), per category, paired differences
over the same queries and seeds, and how often the query's success depends on the noise (some seeds succeed,
others fail). Writes ``benchmarks/results/toy_compose_headroom.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)
from promptloop_agents.policies.compose_reference import (
    SELECT_SEED0,
    ComposeOracleAgent,
    compose_scores,
    select_best_static,
)
from promptloop_env.cli import format_ci, markdown_table, write_json
from promptloop_env.prompts import resolve_prompts
from promptloop_env.stats import bootstrap_ci, paired_difference, rounded
from promptloop_env.toy.compose import CATEGORIES, caption
from promptloop_env.toy.compose_prompts import TOY_COMPOSE_TEST_QUERIES
from promptloop_env.toy.compose_spec import parse
from promptloop_env.viz import image_grid, save_png

TEST_SEED0 = 0
RESULTS = Path(__file__).parent / "results"
ActFn = Callable[[dict[str, Any], list[int]], list[str]]
"""``act(batched_observation, episode_indices) -> one prompt per episode``."""


def rollout(
    env_kwargs: dict[str, Any], queries: Sequence[str], seeds: Sequence[int], act: ActFn, num_envs: int, desc: str
) -> list[np.ndarray]:
    """Final images of one episode per (query, noise seed), ``num_envs`` episodes per batched model call."""
    finals: list[np.ndarray] = []
    envs: dict[int, Any] = {}
    for start in tqdm(range(0, len(queries), num_envs), desc=desc, leave=False):
        idx = list(range(start, min(start + num_envs, len(queries))))
        if len(idx) not in envs:
            envs[len(idx)] = gym.make_vec(
                "PromptLoop-v0", num_envs=len(idx), vectorization_mode="vector_entry_point", **env_kwargs
            )
        env = envs[len(idx)]
        obs, _ = env.reset(options={"query": [queries[i] for i in idx], "noise_seed": [int(seeds[i]) for i in idx]})
        terminated = np.zeros(len(idx), dtype=bool)
        while not terminated.all():
            obs, _, terminated, _, info = env.step(act(obs, idx))
        finals += list(info["final_image"])
    for env in envs.values():
        env.close()
    return finals


def fixed_prompts(prompts: Sequence[str]) -> ActFn:
    """Open loop: episode ``i`` uses ``prompts[i]`` for its whole trajectory."""
    return lambda obs, idx: [prompts[i] for i in idx]


def agent_act(agent: Any) -> ActFn:
    """Batch an agent with ``act(observation) -> prompt`` (the Gymnasium-facing protocol of ``promptloop_agents``)."""
    keys = ("image", "query", "prompt", "segment", "timestep")
    return lambda obs, idx: [agent.act({k: obs[k][j] for k in keys}) for j in range(len(idx))]


def summarise(per_episode: np.ndarray, categories: Sequence[str]) -> dict[str, Any]:
    """``per_episode`` is ``[queries, seeds]``: mean with a bootstrap CI over queries, and the mean per category."""
    per_query = per_episode.mean(axis=1)
    out = rounded(bootstrap_ci(per_query))
    cats = np.array(categories)
    out["by_category"] = {c: round(float(per_query[cats == c].mean()), 4) for c in CATEGORIES if (cats == c).any()}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the results written to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="toy-compose")
    parser.add_argument("--queries", type=int, default=len(TOY_COMPOSE_TEST_QUERIES), help="first N test queries")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--select-seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--refinements", type=int, default=5)
    parser.add_argument("--schedule", default="uniform", help="'uniform' or comma-separated step indices")
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--num-envs", type=int, default=60)
    parser.add_argument(
        "--agents",
        default="identity,best_static_rewrite,oracle_closed_loop",
        help="any of identity, caption_rewrite (equals identity on the caption-template set), best_static_rewrite, "
        "oracle_closed_loop",
    )
    parser.add_argument("--prompt-set", default="toy-compose-test", help="held-out queries (a prompt set name)")
    parser.add_argument("--oracle-min-timestep", type=float, default=0.35)
    parser.add_argument("--selection-from", default="", help="reuse the best static prompts of a results file")
    parser.add_argument("--speed-repeats", type=int, default=9, help="episodes timed per setting (0: skip)")
    parser.add_argument("--out", default=str(RESULTS / "toy_compose_headroom.json"))
    args = parser.parse_args(argv)
    t0 = time.time()
    speed_results = None
    if args.speed_repeats:  # first, while the process is fresh, as a user's would be
        from toy_world_quality import speed

        speed_results = speed(args.speed_repeats, torch.get_num_threads(), backbone=args.backbone)
    schedule = args.schedule if args.schedule in ("uniform", "random") else [int(s) for s in args.schedule.split(",")]
    base = dict(
        backbone=args.backbone,
        reward="toy-compose",
        num_inference_steps=args.steps,
        num_refinements=args.refinements,
        refine_schedule=schedule,
        guidance_scale=args.guidance,
        preview_size=64,
    )
    open_loop, closed_loop = {**base, "preview": "none"}, {**base, "preview": "vae"}
    queries = list(resolve_prompts(args.prompt_set, None)[: args.queries])
    categories = [parse(q).category for q in queries]
    n, s = len(queries), args.seeds
    ep_queries = [q for _ in range(s) for q in queries]  # episode j * n + i: query i, seed j
    ep_seeds = [TEST_SEED0 + 1000 * j + i for j in range(s) for i in range(n)]

    finals_of: dict[str, list[np.ndarray]] = {}

    def evaluate(act: ActFn, kwargs: dict[str, Any], desc: str) -> tuple[np.ndarray, np.ndarray]:
        finals_of[desc] = rollout(kwargs, ep_queries, ep_seeds, act, args.num_envs, desc)
        strict, soft = compose_scores(finals_of[desc], ep_queries)
        return strict.reshape(s, n).T, soft.reshape(s, n).T  # [queries, seeds]

    wanted = args.agents.split(",")
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    best: list[str] = [caption(parse(q)) for q in queries]
    chosen: list[str] = ["caption"] * n
    if args.selection_from:
        saved = json.loads(Path(args.selection_from).read_text())["best_static_prompts"]
        best, chosen = [saved[q]["prompt"] for q in queries], [saved[q]["rewrite"] for q in queries]
    elif {"best_static_rewrite", "oracle_closed_loop"} & set(wanted):
        # The best static rewrite per query, chosen on other seeds than the test's.
        def select_rollout(sel_q: list[str], sel_prompts: list[str], sel_seeds: list[int]) -> list[np.ndarray]:
            return rollout(open_loop, sel_q, sel_seeds, fixed_prompts(sel_prompts), args.num_envs, "select")

        picks = select_best_static(queries, select_rollout, args.select_seeds, SELECT_SEED0)
        chosen, best = [name for name, _ in picks], [prompt for _, prompt in picks]
    best_of = dict(zip(queries, best, strict=True))
    for name in wanted:
        if name == "identity":
            results[name] = evaluate(fixed_prompts(ep_queries), open_loop, name)
        elif name == "caption_rewrite":
            results[name] = evaluate(fixed_prompts([caption(parse(q)) for q in ep_queries]), open_loop, name)
        elif name == "best_static_rewrite":
            results[name] = evaluate(fixed_prompts([best_of[q] for q in ep_queries]), open_loop, name)
        elif name == "oracle_closed_loop":
            oracle = ComposeOracleAgent(best_of.__getitem__, args.oracle_min_timestep)
            results[name] = evaluate(agent_act(oracle), closed_loop, name)
        else:
            raise SystemExit(f"unknown agent {name!r}")

    out: dict[str, Any] = {
        "config": {**vars(args), "queries_used": n, "env": base},
        "agents": {
            a: {"strict": summarise(r[0], categories), "soft": summarise(r[1], categories)} for a, r in results.items()
        },
        "paired": {},
        "best_static_choices": {name: chosen.count(name) for name in sorted(set(chosen))},
        "best_static_prompts": {q: {"prompt": p, "rewrite": c} for q, p, c in zip(queries, best, chosen, strict=True)},
    }
    for a, b in (
        ("oracle_closed_loop", "best_static_rewrite"),
        ("oracle_closed_loop", "identity"),
        ("best_static_rewrite", "identity"),
        ("caption_rewrite", "identity"),
    ):
        if a in results and b in results:
            per_query = results[a][0].mean(axis=1), results[b][0].mean(axis=1)
            out["paired"][f"{a} - {b}"] = rounded(paired_difference(*per_query, method="bootstrap"))
    if "identity" in results:
        strict = results["identity"][0]
        mixed = ((strict.max(axis=1) == 1) & (strict.min(axis=1) == 0)).mean()
        out["noise_dependence"] = {"queries_mixed_over_seeds": round(float(mixed), 4), "seeds": s}
    out["episodes"] = {  # [query][seed] strict scores, for any other statistic
        "queries": queries,
        "seeds": [TEST_SEED0 + 1000 * j for j in range(s)],
        "strict": {a: r[0].astype(int).tolist() for a, r in results.items()},
    }
    if speed_results:
        out["speed"] = speed_results
    # Sample grid: two test queries per category; per agent, the finals of the first two seeds.
    rows, labels = [], []
    for c in CATEGORIES:
        for i in [i for i in range(n) if categories[i] == c][:2]:
            rows.append([finals_of[a][j * n + i] for a in finals_of for j in range(min(s, 2))])
            labels.append(f"{queries[i]}  |  best static: {best[i]}")
    grid_path = Path(args.out).with_name(Path(args.out).stem + "_samples.png")
    save_png(image_grid(rows, labels, cell=80), grid_path)
    out["samples"] = {
        "path": grid_path.name,
        "columns": [f"{a} seed {j}" for a in finals_of for j in range(min(s, 2))],
    }
    out["seconds"] = round(time.time() - t0, 1)
    write_json(args.out, out, indent=1)
    print_table(out)
    return out


def score_table(label: str, results: dict[str, dict[str, Any]], means: dict[str, str] | None = None) -> str:
    """A Markdown table, a row per entry of ``results`` (name -> its summaries): strict mean [95% CI], the soft
    mean, the means of ``means`` (column -> summary key), and the strict mean per category."""
    means = {"soft": "soft", **(means or {})}
    cats = list(next(iter(results.values()))["strict"]["by_category"])
    rows = [
        [name, format_ci(r["strict"]), *(f"{r[key]['mean']:.3f}" for key in means.values())]
        + [f"{r['strict']['by_category'][c]:.2f}" for c in cats]
        for name, r in results.items()
    ]
    return markdown_table([label, "strict [95% CI]", *means, *cats], rows)


def print_table(out: dict[str, Any]) -> None:
    """The agents' strict and soft scores, per category, and the paired differences."""
    print(score_table("agent", out["agents"]))
    for name, d in out["paired"].items():
        print(f"{name}: {format_ci(d, signed=True)}")
    if "speed" in out:
        sp = out["speed"]["median_s"]
        print(f"episode at the defaults: {sp['vae']:.3f} s median (plain pipeline {sp['pipeline']:.3f} s)")
    if "noise_dependence" in out:
        print("queries whose identity success depends on the seed:", out["noise_dependence"])


if __name__ == "__main__":
    main()

"""Held-out quality of the ``toy-compose`` model variants, with the prompt left alone.

Run: ``python research/toy_compose/compose_variants.py [--backbones toy-compose,toy-compose-b,toy-compose-tuned]
[--seeds 8]``.

Each backbone samples the held-out ``toy-compose-test`` queries (20 per GenEval category) with every action
equal to the query (identity), on the noise seeds of ``benchmarks/toy_compose_headroom.py`` (episode ``(i, s)``
uses noise seed ``1000 s + i``), at 20 steps with the backbone's own sampler and the toy worlds' guidance 1
(``--guidance`` to change it). A backbone is a registered name, an experiment model's name (its folder under
``models/``) or a folder, optionally with ``@ddim`` to swap its sampler for ``toy-compose``'s DDIM (trailing
spacing), which separates what a variant's weights do from what its sampler does.

Reported per backbone: strict (GenEval's rule) and soft scores with bootstrap 95% CIs over queries (a query's
mean over its seeds is one unit), per category, how often a query's success depends on the seed, the proxy
``toy-compose-aesthetic``, and the paired difference in strict score to the first backbone (same queries, same
seeds). Writes ``research/toy_compose/results/compose_variants.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import research.* (and this checkout's packages) from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch

from promptloop_agents.policies.compose_reference import compose_scores
from promptloop_env.cli import format_ci, write_json
from promptloop_env.prompts import resolve_prompts
from promptloop_env.stats import paired_difference, rounded
from promptloop_env.toy.compose_spec import parse
from promptloop_env.toy.rewards import ToyComposeAesthetic
from research.toy_compose import TOY_GUIDANCE, backbone_source, benchmark_script

headroom = benchmark_script("toy_compose_headroom")  # the held-out protocol: its seeds, rollouts and summaries

RESULTS = Path(__file__).parent / "results"


def load_backbone(spec: str) -> Any:
    """``name`` or ``folder`` (an experiment model's name: its folder); ``name@ddim`` loaded and given
    ``toy-compose``'s DDIM sampler."""
    name, _, sampler = spec.partition("@")
    source = backbone_source(name)
    if not sampler:
        return source
    if sampler != "ddim":
        raise SystemExit(f"unknown sampler {sampler!r} in {spec!r} (only @ddim)")
    from promptloop_env.toy.model import build_sample_scheduler
    from promptloop_env.toy.raft import load_pipeline

    pipe = load_pipeline(source)
    pipe.scheduler = build_sample_scheduler()
    return pipe


def evaluate(spec: str, queries: list[str], seeds: int, args: argparse.Namespace) -> dict[str, Any]:
    """Identity rollouts of one backbone on ``queries`` x ``seeds``: scores ``[queries, seeds]`` and summaries."""
    n = len(queries)
    ep_queries = [q for _ in range(seeds) for q in queries]
    ep_seeds = [headroom.TEST_SEED0 + 1000 * j + i for j in range(seeds) for i in range(n)]
    kwargs = dict(
        backbone=load_backbone(spec), reward="toy-compose", num_inference_steps=args.steps, preview="none",
        preview_size=64, guidance_scale=TOY_GUIDANCE if args.guidance is None else args.guidance,
    )  # fmt: skip
    t0 = time.time()
    finals = headroom.rollout(kwargs, ep_queries, ep_seeds, headroom.fixed_prompts(ep_queries), args.num_envs, spec)
    strict, soft = compose_scores(finals, ep_queries)
    proxy = np.asarray(ToyComposeAesthetic()(np.stack(finals), ep_queries))
    strict, soft, proxy = (a.reshape(seeds, n).T for a in (strict, soft, proxy))
    categories = [parse(q).category for q in queries]
    mixed = ((strict.max(axis=1) == 1) & (strict.min(axis=1) == 0)).mean()
    return {
        "strict": headroom.summarise(strict, categories),
        "soft": headroom.summarise(soft, categories),
        "proxy_toy_compose_aesthetic": headroom.summarise(proxy, categories),
        "queries_mixed_over_seeds": round(float(mixed), 4),
        "seconds": round(time.time() - t0, 1),
        "_strict": strict,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the results written to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default="toy-compose,toy-compose-b,toy-compose-tuned")
    parser.add_argument("--queries", type=int, default=0, help="first N held-out queries (0: all 120)")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=None, help="default: the toy worlds' 1")
    parser.add_argument("--num-envs", type=int, default=60)
    parser.add_argument("--prompt-set", default="toy-compose-test")
    parser.add_argument("--out", default=str(RESULTS / "compose_variants.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    queries = list(resolve_prompts(args.prompt_set, None))
    queries = queries[: args.queries] if args.queries else queries
    specs = args.backbones.split(",")
    results = {spec: evaluate(spec, queries, args.seeds, args) for spec in specs}
    reference = specs[0]
    base = results[reference]["_strict"].mean(axis=1)
    paired = {
        f"{spec} - {reference}": rounded(paired_difference(r["_strict"].mean(axis=1), base, method="bootstrap"))
        for spec, r in results.items()
        if spec != reference
    }
    out = {
        "config": {**vars(args), "queries_used": len(queries), "seed_offsets": [1000 * j for j in range(args.seeds)]},
        "backbones": {spec: {k: v for k, v in r.items() if not k.startswith("_")} for spec, r in results.items()},
        "paired_strict": paired,
        "episodes": {"queries": queries, "strict": {s: r["_strict"].astype(int).tolist() for s, r in results.items()}},
    }
    write_json(args.out, out, indent=1)
    print_table(out)
    return out


def print_table(out: dict[str, Any]) -> None:
    """Strict [CI], soft, proxy and per-category strict of each backbone, then the paired differences."""
    print(headroom.score_table("backbone", out["backbones"], {"proxy": "proxy_toy_compose_aesthetic"}))
    for name, d in out["paired_strict"].items():
        print(f"{name}: {format_ci(d, signed=True)}")


if __name__ == "__main__":
    main()

"""Env overhead: one identity episode against one plain pipeline call at the same settings, side by side.

Run: ``python benchmarks/env_overhead.py [--repeats 7] [--models tiny,mid]``

Each repeat times the plain ``pipe(query, num_inference_steps=20, guidance_scale=7.5, generator=...)``
call and, right after, one ``PromptLoop-v0`` episode with every action equal to the query (5 refinements)
for each preview, in the same process, alternating, so machine noise hits both. The ratio is
median(episode) / median(pipeline). Results go to ``benchmarks/results/env_overhead.{json,csv}``.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import torch

import promptloop_env  # noqa: F401
from promptloop_env.backbones.tiny import tiny_stable_diffusion_pipeline
from promptloop_env.cli import parse_config

RESULTS = Path(__file__).resolve().parent / "results"
QUERY = "a large red circle on the left"

# model name -> builder of a diffusers pipeline with random weights (tiny configs, CPU).
MODELS: dict[str, Callable[[], object]] = {
    "tiny": lambda: tiny_stable_diffusion_pipeline("tiny"),
    "mid": lambda: tiny_stable_diffusion_pipeline("mid"),
}


def time_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_model(name: str, pipe, previews: list[str], repeats: int, steps: int, refinements: int) -> list[dict]:
    envs = {
        p: gym.make(
            "PromptLoop-v0",
            backbone=pipe,
            reward="jpeg-incompressibility",
            num_inference_steps=steps,
            num_refinements=refinements,
            guidance_scale=7.5,
            preview=p,
            preview_size=256,
        )
        for p in previews
    }

    def plain():
        pipe(
            QUERY,
            num_inference_steps=steps,
            guidance_scale=7.5,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        )

    def episode(env):
        env.reset(seed=0, options={"query": QUERY})
        done = False
        while not done:
            _, _, done, _, _ = env.step(QUERY)

    plain()  # warm-up
    for env in envs.values():
        episode(env)
    times: dict[str, list[float]] = {"pipeline": [], **{p: [] for p in previews}}
    for _ in range(repeats):
        times["pipeline"].append(time_call(plain))
        for p, env in envs.items():
            times[p].append(time_call(lambda env=env: episode(env)))
    base = statistics.median(times["pipeline"])
    return [
        {
            "model": name,
            "preview": p,
            "median_s": statistics.median(times[p]),
            "pipeline_median_s": base,
            "ratio": statistics.median(times[p]) / base,
            "repeats": repeats,
            "steps": steps,
            "refinements": refinements,
            "threads": torch.get_num_threads(),
        }
        for p in previews
    ]


@dataclass
class Args:
    repeats: int = field(default=7, metadata={"help": "timed repeats per configuration"})
    models: str = field(default="", metadata={"help": "comma-separated model names (default: all of them)"})
    previews: str = field(default="none,latent_rgb,vae", metadata={"help": "comma-separated previews"})
    threads: int = field(default=1, metadata={"help": "torch threads (1 is steadier on a shared machine)"})
    steps: int = field(default=20, metadata={"help": "denoising steps"})
    refinements: int = field(default=5, metadata={"help": "actions per episode"})


def main(models: dict[str, Callable[[], object]] = MODELS, stem: str = "env_overhead", doc: str = __doc__) -> None:
    """Parse the command line, benchmark ``models`` and write ``benchmarks/results/<stem>.{json,csv}``."""
    args = parse_config(Args, description=f"{doc}\nModels: {', '.join(models)}.")
    torch.set_num_threads(args.threads)
    rows = []
    for name in (args.models or ",".join(models)).split(","):
        rows += bench_model(name, models[name](), args.previews.split(","), args.repeats, args.steps, args.refinements)
    write_results(rows, stem)


def write_results(rows: list[dict], stem: str) -> None:
    """Write ``rows`` to ``benchmarks/results/<stem>.{json,csv}`` and print them as a table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=2))
    with open(RESULTS / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'model':<10}{'preview':<12}{'episode s':>11}{'pipeline s':>12}{'ratio':>8}")
    for r in rows:
        print(
            f"{r['model']:<10}{r['preview']:<12}{r['median_s']:>11.4f}{r['pipeline_median_s']:>12.4f}{r['ratio']:>8.3f}"
        )


if __name__ == "__main__":
    main()

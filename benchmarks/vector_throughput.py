"""Vector env throughput: episodes per second of the batched vector env, of N single envs, and of the pipeline.

Run: ``PYTHONPATH=. python benchmarks/vector_throughput.py [--models toy-shapes,tiny,mid] [--num-envs 1,2,4,8]``

For each model and each N, three ways of producing N finished episodes (``--steps`` denoising steps,
``--refinements`` actions, classifier-free guidance at the backbone's default scale, every action equal to the
query) are timed side by side, interleaved within each repeat so that load from other processes hits all
three alike:

* ``vector``: ``gym.make_vec("PromptLoop-v0", num_envs=N)``: reset plus ``--refinements`` steps, the N episodes
  denoised in one batched model call per step, previews and the reward included.
* ``singles``: N ``gym.make("PromptLoop-v0")`` envs, each reset and stepped in turn (batch 1 everywhere).
* ``pipeline``: one plain ``pipe([query] * N, generator=[...], output_type="np")`` call at batch N: no
  previews, no reward, no prompt changes. This is the limit the env is measured against.

Each figure is ``N / median(seconds)`` over ``--repeats`` timed runs after one warm-up run. ``ratio`` is
vector / pipeline throughput (target: >= 0.9 at N = 8); ``speedup`` is vector / singles. Models: ``tiny``
(64x64, the test model), ``mid`` (``tiny_stable_diffusion_pipeline(size="mid")``, 256x256) and
``toy-shapes`` when its weights are installed. Results go to ``benchmarks/results/vector_throughput.{json,csv}``
and a table is printed.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)
from promptloop_env.backbones import load_backbone
from promptloop_env.backbones.tiny import tiny_stable_diffusion_pipeline
from promptloop_env.cli import parse_config

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = ["a large red circle on the left", "a small blue square", "a green triangle on a white background"]


def build_backbone(name: str, device: str):
    """The shared backbone of a benchmark model (weights built or loaded once)."""
    if name == "mid":
        return load_backbone(tiny_stable_diffusion_pipeline(size="mid"), device=device)
    return load_backbone(name, device=device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_vector(envs: Any, n: int, refinements: int, seed: int) -> None:
    queries = [QUERIES[i % len(QUERIES)] for i in range(n)]
    envs.reset(seed=seed, options={"query": queries})
    for _ in range(refinements):
        envs.step(queries)


def run_singles(envs: list[Any], n: int, refinements: int, seed: int) -> None:
    for i, env in enumerate(envs[:n]):
        query = QUERIES[i % len(QUERIES)]
        env.reset(seed=seed + i, options={"query": query})
        for _ in range(refinements):
            env.step(query)


def run_pipeline(backbone: Any, n: int, steps: int, seed: int) -> None:
    pipe = backbone.pipe
    generators = [torch.Generator(backbone.device).manual_seed(seed + i) for i in range(n)]
    pipe(
        [QUERIES[i % len(QUERIES)] for i in range(n)],
        num_inference_steps=steps,
        guidance_scale=backbone.default_guidance_scale,
        generator=generators,
        output_type="np",
    )


@dataclass
class Args:
    models: str = field(default="toy-shapes,tiny,mid", metadata={"help": "comma-separated: toy-shapes, tiny, mid"})
    num_envs: str = field(default="1,2,4,8", metadata={"help": "comma-separated batch sizes N"})
    steps: int = field(default=20, metadata={"help": "denoising steps per episode"})
    refinements: int = field(default=5, metadata={"help": "actions per episode"})
    preview: str = field(default="latent_rgb", metadata={"help": "vae | taesd | latent_rgb | none"})
    preview_size: int = field(default=64, metadata={"help": "side of the previews"})
    reward: str = field(default="jpeg-incompressibility", metadata={"help": "reward name"})
    repeats: int = field(default=3, metadata={"help": "timed runs per figure (after one warm-up)"})
    device: str = field(default="", metadata={"help": "torch device (default: cuda if available, else cpu)"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads"})
    tag: str = field(default="", metadata={"help": "suffix of the result files (e.g. the machine)"})


def bench_model(name: str, args: Args) -> list[dict[str, Any]]:
    backbone = build_backbone(name, args.device)
    env_kwargs = {
        "backbone": backbone,
        "reward": args.reward,
        "num_inference_steps": args.steps,
        "num_refinements": args.refinements,
        "preview": args.preview,
        "preview_size": args.preview_size,
        "prompts": QUERIES,
    }
    singles = [gym.make("PromptLoop-v0", **env_kwargs) for _ in range(max(args.num_envs))]
    rows = []
    for n in args.num_envs:
        vector = gym.make_vec("PromptLoop-v0", num_envs=n, vectorization_mode="vector_entry_point", **env_kwargs)
        runs = {
            "vector": lambda seed, n=n, vector=vector: run_vector(vector, n, args.refinements, seed),
            "singles": lambda seed, n=n: run_singles(singles, n, args.refinements, seed),
            "pipeline": lambda seed, n=n: run_pipeline(backbone, n, args.steps, seed),
        }
        times: dict[str, list[float]] = {key: [] for key in runs}
        for repeat in range(args.repeats + 1):
            for key, run in runs.items():
                sync(args.device)
                start = time.perf_counter()
                run(1000 * repeat)
                sync(args.device)
                if repeat > 0:  # repeat 0 is the warm-up
                    times[key].append(time.perf_counter() - start)
        vector.close()
        rate = {key: n / statistics.median(values) for key, values in times.items()}
        rows.append(
            {
                "model": name,
                "num_envs": n,
                "vector_eps": rate["vector"],
                "singles_eps": rate["singles"],
                "pipeline_eps": rate["pipeline"],
                "ratio": rate["vector"] / rate["pipeline"],
                "speedup": rate["vector"] / rate["singles"],
                "times_s": {key: [round(t, 4) for t in values] for key, values in times.items()},
            }
        )
        print(_format_row(rows[-1]), flush=True)
    for env in singles:
        env.close()
    return rows


def _format_row(row: dict[str, Any]) -> str:
    return (
        f"{row['model']:>10} {row['num_envs']:>3} {row['vector_eps']:>10.2f} {row['singles_eps']:>10.2f} "
        f"{row['pipeline_eps']:>10.2f} {row['ratio']:>7.2f} {row['speedup']:>8.2f}"
    )


def main() -> None:
    args = parse_config(Args, description=__doc__.split("\n\n")[0])
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.num_envs = [int(n) for n in args.num_envs.split(",")]
    torch.set_num_threads(args.threads)

    print(f"{'model':>10} {'N':>3} {'vector/s':>10} {'singles/s':>10} {'pipe/s':>10} {'ratio':>7} {'speedup':>8}")
    rows = []
    for name in args.models.split(","):
        try:
            rows += bench_model(name, args)
        except FileNotFoundError as err:  # toy-shapes before its weights are trained
            print(f"skipping {name}: {err}")
    settings = {key: value for key, value in vars(args).items() if key != "models"}
    machine = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"vector_throughput{'_' + args.tag if args.tag else ''}"
    stem.with_suffix(".json").write_text(
        json.dumps({"settings": settings, "machine": machine, "rows": rows}, indent=2)
    )
    with stem.with_suffix(".csv").open("w", newline="") as handle:
        fields = ["model", "num_envs", "vector_eps", "singles_eps", "pipeline_eps", "ratio", "speedup"]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {stem}.json and {stem}.csv")


if __name__ == "__main__":
    main()

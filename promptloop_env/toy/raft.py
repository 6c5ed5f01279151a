"""Reward-filtered fine-tuning data for the toy models (RAFT, rejection-sampling fine-tuning).

One round of RAFT: sample the model on a prompt set, score every sample with a reward against its query, keep
the best, and fine-tune the model on the kept (query, image) pairs with its own diffusion loss. This module does
the first three steps and saves a dataset folder; the trainer does the fourth::

    python -m promptloop_env.toy.raft --model promptloop_env/toy/assets/toy-compose --reward toy-compose \\
        --prompts toy-compose-train --samples-per-query 3 --keep-min 1.0 --out runs/raft-data
    python -m promptloop_env.toy.train --out runs/toy-compose-tuned --world compose \\
        --init-from promptloop_env/toy/assets/toy-compose --data runs/raft-data --unet-minutes 15 ...

(The repository's experiment model ``toy-compose-tuned`` is one such round, rebuilt by
``research/toy_compose/rebuild_models.py``.)

A dataset folder holds ``images.safetensors`` (one ``uint8 [N, 64, 64, 3]`` tensor, ``images``),
``captions.json`` (the query of each image) and ``dataset.json`` (how it was made, and the reward of every
sample drawn, kept or not). Samples come from the plain diffusers pipeline at the model's defaults, sample
``(i, s)`` of query ``i`` with noise seed ``seed0 + 1000 s + i`` (the seeds of the held-out benchmarks start at
0, so pass another ``--seed0`` to keep training noise apart from test noise).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGES = "images.safetensors"
CAPTIONS = "captions.json"
META = "dataset.json"


@dataclass
class Samples:
    """Images drawn for queries, and each one's reward."""

    images: np.ndarray
    queries: list[str]
    seeds: list[int]
    rewards: np.ndarray


def pipeline_folder(model: str) -> Path:
    """The folder of a registered backbone name (``toy-compose``), or ``model`` itself as a folder."""
    from promptloop_env.backbones import BACKBONES

    folder = BACKBONES[model].folder if model in BACKBONES else Path(model)
    if folder is None:
        raise ValueError(f"{model!r} has no pipeline folder; pass a toy backbone name or a folder")
    return folder


def load_pipeline(model: str):
    """A toy pipeline from a registered backbone name or a pipeline folder (safetensors only, progress bar off)."""
    from promptloop_env.backbones.entries import from_pretrained

    return from_pretrained(str(pipeline_folder(model)), None, local_files_only=True)


@torch.no_grad()
def sample(
    pipe,
    queries: Sequence[str],
    seeds: Sequence[int],
    reward,
    num_inference_steps: int = 20,
    guidance_scale: float = 1.0,
    batch_size: int = 64,
) -> Samples:
    """One image per (query, seed) from the plain pipeline (one generator per image), scored by ``reward``."""
    images = []
    for i in range(0, len(queries), batch_size):
        out = pipe(
            list(queries[i : i + batch_size]),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds[i : i + batch_size]],
            output_type="np",
        )
        images.append((out.images * 255).round().astype(np.uint8))
    stacked = np.concatenate(images)
    rewards = np.asarray(reward(stacked, list(queries)), dtype=np.float64)
    return Samples(stacked, list(queries), [int(s) for s in seeds], rewards)


def select(
    samples: Samples, keep_min: float | None = None, keep_top: float | None = None, max_per_query: int = 0
) -> np.ndarray:
    """Indices of the samples to keep, best first.

    Args:
        keep_min: keep samples whose reward is at least this (e.g. 1.0 for a strict reward).
        keep_top: keep this fraction of all samples, by reward (ties broken by draw order).
        max_per_query: keep at most this many per query (0: no cap), so easy queries do not crowd out the rest.

    >>> s = Samples(np.zeros((4, 1, 1, 3), np.uint8), ["a", "a", "b", "b"], [0, 1, 2, 3], np.array([1, 0.5, 1, 1]))
    >>> select(s, keep_min=1.0).tolist(), select(s, keep_top=0.5).tolist(), select(s, 1.0, max_per_query=1).tolist()
    ([0, 2, 3], [0, 2], [0, 2])
    """
    order = np.argsort(-samples.rewards, kind="stable")
    if keep_min is not None:
        order = order[samples.rewards[order] >= keep_min]
    if keep_top is not None:
        order = order[: int(round(keep_top * len(samples.rewards)))]
    if max_per_query:
        taken: dict[str, int] = {}
        kept = []
        for i in order:
            q = samples.queries[i]
            if taken.get(q, 0) < max_per_query:
                taken[q] = taken.get(q, 0) + 1
                kept.append(i)
        order = np.array(kept, dtype=np.int64)
    return order


def save_dataset(folder: str | Path, images: np.ndarray, captions: Sequence[str], meta: dict[str, Any]) -> None:
    """Write a dataset folder (see the module doc)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"images": np.ascontiguousarray(images, dtype=np.uint8)}, str(folder / IMAGES))
    (folder / CAPTIONS).write_text(json.dumps(list(captions)))
    (folder / META).write_text(json.dumps(meta, indent=1))


def load_dataset(folder: str | Path) -> tuple[np.ndarray, list[str]]:
    """``(images uint8 [N, H, W, 3], captions)`` of a dataset folder."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    if not (folder / IMAGES).is_file():
        raise FileNotFoundError(f"{folder} is not a dataset folder (no {IMAGES}); make one with toy.raft")
    images = load_file(str(folder / IMAGES))["images"]
    captions = json.loads((folder / CAPTIONS).read_text())
    if len(captions) != len(images):
        raise ValueError(f"{folder}: {len(images)} images but {len(captions)} captions")
    return images, captions


def build(
    model: str,
    reward: str,
    queries: Sequence[str],
    samples_per_query: int,
    out: str | Path,
    keep_min: float | None = None,
    keep_top: float | None = None,
    max_per_query: int = 0,
    seed0: int = 1_000_000,
    num_inference_steps: int = 20,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Sample, score, keep and save one RAFT round's dataset; returns its ``dataset.json`` record."""
    from promptloop_env.rewards import make_reward

    t0 = time.time()
    pipe = load_pipeline(model)
    n = len(queries)
    ep_queries = [q for _ in range(samples_per_query) for q in queries]
    ep_seeds = [seed0 + 1000 * j + i for j in range(samples_per_query) for i in range(n)]
    drawn = sample(pipe, ep_queries, ep_seeds, make_reward(reward), num_inference_steps, batch_size=batch_size)
    kept = select(drawn, keep_min, keep_top, max_per_query)
    meta = dict(
        model=str(model),
        reward=reward,
        queries=n,
        samples_per_query=samples_per_query,
        seed0=seed0,
        num_inference_steps=num_inference_steps,
        keep_min=keep_min,
        keep_top=keep_top,
        max_per_query=max_per_query,
        drawn=len(ep_queries),
        kept=len(kept),
        mean_reward_drawn=round(float(drawn.rewards.mean()), 4),
        mean_reward_kept=round(float(drawn.rewards[kept].mean()), 4) if len(kept) else None,
        queries_kept=len({ep_queries[i] for i in kept}),
        seconds=round(time.time() - t0, 1),
        rewards=[round(float(r), 4) for r in drawn.rewards],
    )
    save_dataset(out, drawn.images[kept], [ep_queries[i] for i in kept], meta)
    return meta


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the dataset record."""
    from promptloop_env.prompts import resolve_prompts

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="toy backbone name or pipeline folder to sample")
    parser.add_argument("--reward", default="toy-compose", help="reward name (scored against each query)")
    parser.add_argument("--prompts", default="toy-compose-train", help="prompt set name")
    parser.add_argument("--queries", type=int, default=0, help="first N queries of the set (0: all)")
    parser.add_argument("--samples-per-query", type=int, default=4)
    parser.add_argument("--keep-min", type=float, default=None, help="keep samples with reward >= this")
    parser.add_argument("--keep-top", type=float, default=None, help="keep this fraction of samples, best first")
    parser.add_argument("--max-per-query", type=int, default=0, help="cap on kept samples per query (0: none)")
    parser.add_argument("--seed0", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="dataset folder to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    queries = list(resolve_prompts(args.prompts, None))
    queries = queries[: args.queries] if args.queries else queries
    meta = build(
        args.model,
        args.reward,
        queries,
        args.samples_per_query,
        args.out,
        args.keep_min,
        args.keep_top,
        args.max_per_query,
        args.seed0,
        args.steps,
        args.batch_size,
    )
    print(json.dumps({k: v for k, v in meta.items() if k != "rewards"}))
    return meta


if __name__ == "__main__":
    main()

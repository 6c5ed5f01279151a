"""Reward throughput: images per second of each reward at batch 1 and 16, on CPU, one thread.

Run: ``PYTHONPATH=. python benchmarks/reward_throughput.py [--repeats 7] [--image-size 256]``

The model-based rewards run on their tiny random-weight stand-ins (``promptloop_env.testing``: the
real architectures and loading paths at toy sizes), so the figures measure this package's per-call cost
(PIL preprocessing, tokenising, batching, host copies) rather than the real models' FLOPs; the JPEG rewards
are measured as they are. Each figure is ``batch / median(call time)`` over ``--repeats`` calls after a warm-up
call. Results go to ``benchmarks/results/reward_throughput.json``.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers

from promptloop_env.cli import parse_config
from promptloop_env.registry import resolve
from promptloop_env.rewards import REWARDS
from promptloop_env.testing import STANDIN_BUILDERS, make_standin_reward, sample_images

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = ["a large red circle on the left", "a small blue square", "a green triangle on a white background"]
BATCHES = (1, 16)


def images_per_second(reward, batch: int, image_size: int, repeats: int) -> float:
    images = sample_images(batch, size=image_size, seed=batch)
    queries = [QUERIES[i % len(QUERIES)] for i in range(batch)]
    reward(images, queries)  # warm-up (and lazy loading)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        reward(images, queries)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


@dataclass
class Args:
    repeats: int = field(default=7, metadata={"help": "timed calls per figure (after a warm-up)"})
    image_size: int = field(default=256, metadata={"help": "side of the square uint8 input images"})


def main() -> None:
    args = parse_config(Args, description=__doc__.split("\n\n")[0])
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rewards = {"jpeg-incompressibility": resolve(REWARDS["jpeg-incompressibility"])()}
        for name in STANDIN_BUILDERS:
            rewards[name] = make_standin_reward(name, str(Path(folder) / name), device="cpu")
        for name, reward in rewards.items():
            row = {"reward": name, "weights": "none" if name.startswith("jpeg") else "tiny stand-in"}
            for batch in BATCHES:
                row[f"batch_{batch}_images_per_s"] = images_per_second(reward, batch, args.image_size, args.repeats)
            rows.append(row)

    result = {
        "device": "cpu",
        "threads": 1,
        "image_size": args.image_size,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
        "rewards": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reward_throughput.json").write_text(json.dumps(result, indent=2) + "\n")

    header = f"{'reward':<24}{'weights':<15}" + "".join(f"{f'batch {b} img/s':>16}" for b in BATCHES)
    print(header)
    print("-" * len(header))
    for row in rows:
        figures = "".join(f"{row[f'batch_{b}_images_per_s']:>16.1f}" for b in BATCHES)
        print(f"{row['reward']:<24}{row['weights']:<15}{figures}")
    print(
        f"\n{args.image_size}x{args.image_size} inputs, CPU, 1 thread; written to {RESULTS / 'reward_throughput.json'}"
    )


if __name__ == "__main__":
    main()

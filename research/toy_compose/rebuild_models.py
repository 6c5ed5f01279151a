"""Rebuild the two experiment models of ``research/toy_compose/models/`` with the library's own trainer.

- ``toy-compose-b`` (the generalisation experiment's backbone): ``toy-compose``'s recipe with another seed, a
  22-minute budget, a higher learning rate and the DPM-Solver++ sampler set after training;
- ``toy-compose-tuned`` (the composition experiment's backbone): the shipped ``toy-compose`` after one round of
  RAFT on its strict reward (two draws of reward-filtered samples, then 13 minutes of fine-tuning).

Each model's ``README.md`` beside its weights gives the settings and what was measured on it. The budgets are
wall-clock minutes on the repository's shared 2-core CPU, so a rebuild on other hardware trains for a different
number of steps and will not be bit-identical. ``--scale 0.01`` shrinks every budget, the scenes and the RAFT
queries for a smoke run of the commands.

Run from the repository root (about 40 minutes for ``b``, 30 for ``tuned`` on one core)::

    python research/toy_compose/rebuild_models.py --models toy-compose-b,toy-compose-tuned --out runs/models
    # then, to replace the committed models: cp -r runs/models/<name>/. research/toy_compose/models/<name>/

The weights land in ``OUT/<name>`` (RAFT data in ``OUT/raft-1`` and ``OUT/raft-2``); pass that folder as
``backbone=`` (with ``guidance_scale=1``, the toy worlds' default, which a folder does not carry).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import research.* (and this checkout's packages) from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from promptloop_env.toy import raft
from promptloop_env.toy import train as toy_train

ASSETS = Path(toy_train.__file__).resolve().parent / "assets"


def minutes(value: float, scale: float) -> str:
    """A training budget in minutes, scaled."""
    return f"{value * scale:g}"


def count(value: int, scale: float, least: int) -> str:
    """A data size, scaled down (never up) for smoke runs, at least ``least``."""
    return str(value if scale >= 1 else max(least, round(value * scale)))


def build_b(out: Path, scale: float) -> Path:
    """``toy-compose-b``: the compose world from ``toy-shapes``, seed 1, 22 minutes, lr 6e-4, then DPM-Solver++."""
    from promptloop_env.toy.model import build_sample_scheduler

    folder = out / "toy-compose-b"
    toy_train.main(
        ["--out", str(folder), "--world", "compose", "--num-scenes", count(40_000, scale, 200),
         "--init-from", str(ASSETS / "toy-shapes"), "--unet-minutes", minutes(22, scale), "--batch-size", "128",
         "--lr", "6e-4", "--warmup-steps", "30", "--captions-per-combo", "4", "--eval-queries", "0",
         "--checkpoint-minutes", "5", "--num-threads", "1", "--seed", "1"]
    )  # fmt: skip
    build_sample_scheduler("dpm++").save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "DPMSolverMultistepScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder


def build_tuned(out: Path, scale: float) -> Path:
    """``toy-compose-tuned``: two RAFT draws of ``toy-compose`` on its strict reward, then 13 minutes of tuning."""
    draws = [
        ("raft-1", ["--max-per-query", "2"]),
        ("raft-2", ["--seed0", "1100000"]),
    ]
    queries = "0" if scale >= 1 else count(600, scale, 6)  # 0: every training query
    for name, extra in draws:
        raft.main(
            ["--model", "toy-compose", "--reward", "toy-compose", "--prompts", "toy-compose-train",
             "--samples-per-query", "2", "--keep-min", "1.0", "--queries", queries, "--out", str(out / name),
             *extra]
        )  # fmt: skip
    folder = out / "toy-compose-tuned"
    toy_train.main(
        ["--out", str(folder), "--init-from", str(ASSETS / "toy-compose"),
         "--data", ",".join(str(out / name) for name, _ in draws), "--unet-minutes", minutes(13, scale),
         "--batch-size", "64", "--lr", "1e-4", "--warmup-steps", "20", "--eval-queries", "0",
         "--checkpoint-minutes", "5", "--num-threads", "1", "--seed", "2"]
    )  # fmt: skip
    return folder


BUILDERS = {"toy-compose-b": build_b, "toy-compose-tuned": build_tuned}


def main(argv: list[str] | None = None) -> list[Path]:
    """Command-line entry point; returns the folders written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(BUILDERS), help=f"comma-separated, of {', '.join(BUILDERS)}")
    parser.add_argument("--out", default="runs/models", help="each model goes to OUT/<name>")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every training budget (smoke runs: 0.01)")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; valid: {', '.join(BUILDERS)}")
    out = Path(args.out)
    return [BUILDERS[name](out, args.scale) for name in names]


if __name__ == "__main__":
    main()

"""Watching a GRPO run: the metrics log, accelerate trackers, sampled prompts with previews, a held-out monitor.

- Every iteration: one line of ``metrics.jsonl`` and ``accelerator.log`` to the trackers of ``report_to``
  (TensorBoard, wandb, trackio through accelerate).
- Every ``log_samples_every`` iterations: ``samples/iteration-<n>.json`` (query, prompts, reward of a few
  episodes) and ``samples/iteration-<n>.png`` (their previews with the prompt written on each), also sent to
  the trackers (image, and a table where the tracker has one).
- Every ``eval_every`` iterations: the held-out evaluation it is given as a callback (the trainer's, over a
  :class:`~promptloop_agents.learners.held_out.HeldOutMonitor`), logged as ``eval/<metric>``: a training reward
  that climbs while these fall is reward hacking (over-optimisation). This module imports neither the
  evaluation harness nor the CLI.
- The run's config, stored in checkpoints and compared on resume.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from promptloop_agents.configs import config_changes

SAMPLE_EPISODES = 4


def _scalars(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The config flattened to ``section/field`` scalars (what trackers accept as hyper-parameters)."""
    flat = {}
    for section, values in config.items():
        for key, value in values.items():
            flat[f"{section}/{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


class RunLogger:
    """The trainer's logging side (see the module docstring).

    Args:
        trainer: a :class:`~promptloop_agents.learners.grpo_trainer.GRPOTrainer` (config, accelerator, run folder).
        evaluate: the held-out evaluation, called on every process every ``eval_every`` iterations; returns
            ``{"eval/<metric>": value}`` on the main process (other processes may return ``{}``).
        run_config: the run's config, stored in checkpoints and compared on resume.
    """

    def __init__(
        self,
        trainer: Any,
        evaluate: Callable[[], dict[str, float]] | None,
        run_config: dict[str, dict[str, Any]],
    ) -> None:
        self.trainer, self.evaluate, self.run_config = trainer, evaluate, run_config
        self.config = trainer.config
        if self.config.eval_every and evaluate is None:
            raise ValueError("eval_every > 0 needs a held-out evaluation (eval_envs or held_out for the trainer).")

    @property
    def accelerator(self) -> Any:
        return self.trainer.accelerator

    def saved_config(self) -> dict[str, dict[str, Any]]:
        """The run's config as stored in checkpoints."""
        return self.run_config

    def check_config(self, saved: dict[str, dict[str, Any]], checkpoint: Path) -> None:
        """Refuse to resume under a changed config unless ``allow_config_change``."""
        changes = config_changes(saved, self.run_config)
        if changes and not self.config.allow_config_change:
            raise ValueError(
                f"{checkpoint} was written under another config; changed: {'; '.join(changes)}. Resume with the "
                "saved config (--config <run>/config.yaml), start a new --output-dir, or pass "
                "--allow-config-change true to continue under the new one."
            )

    def start(self) -> None:
        """Initialise the trackers (main process; accelerate does nothing without ``log_with``)."""
        if self.accelerator.log_with:
            self.accelerator.init_trackers("promptloop", config=_scalars(self.run_config))

    def end(self) -> None:
        if self.accelerator.log_with:
            self.accelerator.end_training()

    def iteration(self, metrics: dict, episodes: list, samples: list) -> None:
        """Log one finished iteration (metrics, and on schedule sampled prompts and the held-out monitor)."""
        step = self.trainer.iteration
        if self.config.eval_every and step % self.config.eval_every == 0:
            metrics.update(self.evaluate())
        if self.trainer.is_main:
            with open(self.trainer.metrics_file, "a") as handle:
                handle.write(json.dumps(metrics) + "\n")
        if self.accelerator.log_with:
            self.accelerator.log({k: v for k, v in metrics.items() if k != "iteration"}, step=step)
        if self.config.log_samples_every and step % self.config.log_samples_every == 0 and self.trainer.is_main:
            self.log_samples(step, episodes, samples)

    def log_samples(self, step: int, episodes: list, samples: list) -> None:
        """Write (and track) a few episodes' prompts and, where the policy saw them, their previews."""
        from promptloop_env.viz import filmstrip, save_png, stack_rows

        folder = self.trainer.run_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        picks = list(range(min(SAMPLE_EPISODES, len(episodes), self.trainer.envs.num_envs)))
        rows = [
            {"query": episodes[i].query, "seed": episodes[i].seed, "prompts": episodes[i].prompts}
            | {"reward": episodes[i].reward}
            for i in picks
        ]
        (folder / f"iteration-{step:06d}.json").write_text(json.dumps(rows, indent=2))
        previews = self._previews(samples, picks)
        strips = [
            filmstrip(frames, episodes[i].prompts, title=f"{episodes[i].query} (reward {episodes[i].reward:.3f})")
            for i, frames in zip(picks, previews, strict=True)
            if frames
        ]
        image = None
        if strips:
            stacked = stack_rows(strips)
            save_png(stacked, folder / f"iteration-{step:06d}.png")
            image = np.asarray(stacked.convert("RGB"))
        self._track_samples(step, rows, image)

    def _previews(self, samples: list, picks: list[int]) -> list[list[np.ndarray]]:
        """The previews the policy was shown for each picked episode (empty when it saw none).

        Policy calls go chunk by chunk of ``num_envs`` episodes, ``num_refinements`` calls per chunk; the picked
        episodes are in the first chunk.
        """
        chunks = self.config.queries_per_iteration * self.config.group_size // self.trainer.envs.num_envs
        frames: list[list[np.ndarray]] = [[] for _ in picks]
        for sample in samples[: len(samples) // chunks]:
            if sample.images is not None:
                for slot, i in enumerate(picks):
                    frames[slot].append(np.asarray(sample.images[i].convert("RGB")))
        return frames

    def _track_samples(self, step: int, rows: list[dict], image: np.ndarray | None) -> None:
        if not self.accelerator.log_with:
            return
        text = "\n\n".join(f"**{r['query']}** ({r['reward']:.3f}): " + " | ".join(r["prompts"]) for r in rows)
        self.accelerator.log({"samples/prompts": text}, step=step)
        for tracker in self.accelerator.trackers:
            if image is not None and hasattr(tracker, "log_images"):
                layout = {"dataformats": "NHWC"} if tracker.name == "tensorboard" else {}
                tracker.log_images({"samples/previews": image[None]}, step=step, **layout)
            if hasattr(tracker, "log_table"):
                columns = ["query", "reward", "prompts"]
                data = [[r["query"], r["reward"], " | ".join(r["prompts"])] for r in rows]
                tracker.log_table("samples/table", columns=columns, data=data, step=step)

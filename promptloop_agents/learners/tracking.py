"""Watching a GRPO run: the metrics log, accelerate trackers, sampled prompts with previews, a held-out monitor.

- Every iteration: one line of ``metrics.jsonl`` and ``accelerator.log`` to the trackers of ``report_to``
  (TensorBoard, wandb, trackio through accelerate).
- Every ``log_samples_every`` iterations: ``samples/iteration-<n>.json`` (query, prompts, reward of a few
  episodes) and ``samples/iteration-<n>.png`` (their previews with the prompt written on each), also sent to
  the trackers (image, and a table where the tracker has one).
- Every ``eval_every`` iterations: the policy on held-out queries (fixed seeds; uniform schedule, or the
  training one when explicit), scored by ``eval_metrics``, logged as ``eval/<metric>``: a training reward
  that climbs while these fall is reward hacking (over-optimisation).
- The run's config, stored in checkpoints and compared on resume.
"""

from __future__ import annotations

import json
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
    """The trainer's logging side (see the module docstring); ``trainer`` is a :class:`GRPOTrainer`."""

    def __init__(self, trainer: Any, eval_envs: Any | None, run_config: dict[str, dict[str, Any]]) -> None:
        self.trainer, self.eval_envs, self.run_config = trainer, eval_envs, run_config
        self.config = trainer.config
        self.metric_fns: dict[str, Any] | None = None
        if self.config.eval_every and eval_envs is None:
            raise ValueError("eval_every > 0 needs eval_envs (a vector env with a uniform schedule).")

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

    def evaluate(self) -> dict[str, float]:
        """The held-out monitor: the policy on ``eval_queries`` held-out queries, scored by ``eval_metrics``."""
        from promptloop_agents.evaluation.harness import evaluate
        from promptloop_agents.rollout import load_queries
        from promptloop_env.rewards import make_reward

        config = self.config
        every = load_queries(config.eval_prompts)  # evenly spaced: prompt sets are often ordered by category
        queries = [every[i] for i in np.linspace(0, len(every) - 1, min(config.eval_queries, len(every))).astype(int)]
        seeds = np.random.default_rng(config.seed + 1).integers(0, 2**31 - 1, size=len(queries))
        if self.metric_fns is None:
            self.metric_fns = {name: make_reward(name) for name in config.eval_metrics.split(",") if name}
        policy = self.trainer.policy
        results = evaluate({"policy": policy}, self.eval_envs, queries, seeds, self.metric_fns, progress=False)
        self.trainer.model.eval()
        return {f"eval/{name}": float(np.mean(values)) for name, values in results["policy"].scores.items()}

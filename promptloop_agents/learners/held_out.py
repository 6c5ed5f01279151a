"""The held-out monitor of a training run: fixed queries and seeds, an eval vector env, metric models built once.

A training reward that climbs while held-out metrics fall is reward hacking (over-optimisation). The monitor is
built at start-up, so a missing metric weight fails before the first iteration, not at the first evaluation; its
metric models live on the main process only. Each evaluation splits the episodes across ranks (every rank runs
the same number of ``generate`` calls, which sharded engines need), gathers the final images on the main process
and scores them there (:meth:`GRPOTrainer.evaluate_held_out
<promptloop_agents.learners.grpo_trainer.GRPOTrainer.evaluate_held_out>`). It imports neither the evaluation
harness nor the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from promptloop_agents.rollout import ActFn, load_queries, run_episodes


class HeldOutMonitor:
    """Held-out episodes and their metrics.

    Args:
        envs: a PromptLoop vector env with the evaluation schedule (uniform, or the training one when explicit).
        queries, seeds: the held-out episodes, one seed per query, the same at every evaluation.
        metrics: name -> batched reward ``(images, queries) -> floats``, already loaded; ``None`` on processes that
            only roll out (every process but the main one).
    """

    def __init__(
        self,
        envs: Any,
        queries: Sequence[str],
        seeds: Sequence[int],
        metrics: Mapping[str, Callable] | None,
    ) -> None:
        if len(queries) != len(seeds) or not queries:
            raise ValueError(f"Need one seed per held-out query; got {len(queries)} queries and {len(seeds)} seeds.")
        self.envs, self.queries, self.seeds = envs, list(queries), [int(s) for s in seeds]
        self.metrics = dict(metrics) if metrics is not None else None

    @classmethod
    def from_config(
        cls, config: Any, envs: Any, build_metrics: bool, device: Any = None, torch_dtype: Any = None
    ) -> HeldOutMonitor:
        """The monitor of a :class:`~promptloop_agents.learners.grpo_config.GRPOConfig` (``eval_prompts``,
        ``eval_queries``, ``eval_metrics``); the metric models are loaded now when ``build_metrics``."""
        every = load_queries(config.eval_prompts)  # evenly spaced: prompt sets are often ordered by category
        picks = np.linspace(0, len(every) - 1, min(config.eval_queries, len(every))).astype(int)
        queries = [every[i] for i in picks]
        seeds = np.random.default_rng(config.seed + 1).integers(0, 2**31 - 1, size=len(queries))
        metrics = None
        if build_metrics:
            from promptloop_env.rewards import make_reward

            names = [name.strip() for name in config.eval_metrics.split(",") if name.strip()]
            metrics = {name: make_reward(name, device=device, torch_dtype=torch_dtype) for name in names}
        return cls(envs, queries, seeds, metrics)

    def shard(self, rank: int, world_size: int) -> list[int]:
        """This rank's episode indices: an equal share for every rank (the last index repeats to fill it).

        >>> monitor = HeldOutMonitor(None, ["a", "b", "c"], [1, 2, 3], None)
        >>> monitor.shard(0, 2), monitor.shard(1, 2)
        ([0, 2], [1, 1])
        """
        per_rank = -(-len(self.queries) // world_size)
        indices = list(range(rank, len(self.queries), world_size))
        return (indices + [indices[-1] if indices else len(self.queries) - 1] * per_rank)[:per_rank]

    def rollout(self, act: ActFn, indices: Sequence[int]) -> list[np.ndarray]:
        """The final images of the given episodes, played by ``act``."""
        queries = [self.queries[i] for i in indices]
        seeds = [self.seeds[i] for i in indices]
        episodes = run_episodes(self.envs, act, queries, seeds, keep_images=True)
        return [episode.final_image for episode in episodes]

    def score(self, images: Mapping[int, np.ndarray]) -> dict[str, float]:
        """Mean of every metric over the episodes (index -> final image, each index once), as ``eval/<metric>``."""
        if self.metrics is None:
            raise RuntimeError("This monitor has no metric models (they are built on the main process only).")
        order = sorted(images)
        stacked = np.stack([images[i] for i in order])
        queries = [self.queries[i] for i in order]
        return {f"eval/{name}": float(np.mean(fn(stacked, queries))) for name, fn in self.metrics.items()}

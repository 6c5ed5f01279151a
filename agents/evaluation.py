"""Evaluating agents on held-out queries: the same (query, seed) pairs for every agent, mean and 95% CI."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from promptloop_agents.protocol import Agent, act_batch
from promptloop_agents.rollout import ActFn, Episode, run_episodes
from promptloop_env import stats
from promptloop_env.stats import mean_ci


def agent_act_fn(agent: Agent) -> ActFn:
    """Wrap an :class:`Agent` as the batched ``act`` of :func:`run_episodes` (resetting it on each new episode)."""

    def act(observations: list[dict]) -> list[str]:
        if int(np.asarray(observations[0]["segment"]).reshape(-1)[0]) == 0:
            agent.reset()
        return act_batch(agent, observations)

    return act


@dataclass
class EvalResult:
    """Episodes of one agent and their scores under every metric."""

    name: str
    episodes: list[Episode]
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """``{metric: {mean, ci_low, ci_high, std, n}}`` plus prompt statistics."""
        out: dict[str, Any] = {metric: mean_ci(values) for metric, values in self.scores.items()}
        prompts = [p for e in self.episodes for p in e.prompts]
        out["prompt_words"] = float(np.mean([len(p.split()) for p in prompts])) if prompts else 0.0
        out["distinct_prompts"] = len(set(prompts)) / max(len(prompts), 1)
        return out


def evaluate(
    agents: Mapping[str, Agent | ActFn],
    envs: gym.vector.VectorEnv,
    queries: Sequence[str],
    seeds: Sequence[int],
    metrics: Mapping[str, Callable],
    progress: bool = True,
    seed: int = 0,
) -> dict[str, EvalResult]:
    """Run every agent on the same ``(query, seed)`` episodes and score the final images with ``metrics``.

    Args:
        agents: name -> an :class:`Agent` or a batched ``act`` function.
        envs: the vector env (uniform refinement schedule for evaluation).
        queries, seeds: the episodes, identical for all agents (paired comparison).
        metrics: name -> batched reward callable ``(images, queries) -> floats`` on the final images.
        progress: show a progress bar over agents.
        seed: each agent is reset with it before its episodes (seeds the policies' sampling).
    """
    results = {}
    for name, agent in tqdm(agents.items(), desc="evaluate", disable=not progress, leave=False):
        if hasattr(agent, "act"):
            agent.reset(seed=seed)
            act = agent_act_fn(agent)
        else:
            act = agent
        episodes = run_episodes(envs, act, queries, seeds, keep_images=True)
        images = np.stack([e.final_image for e in episodes])
        scores = {m: np.asarray(fn(images, list(queries)), dtype=np.float64) for m, fn in metrics.items()}
        results[name] = EvalResult(name, episodes, scores)
    return results


def paired_difference(a: EvalResult, b: EvalResult, metric: str) -> dict[str, float]:
    """Mean and 95% CI of ``a - b`` per episode (the agents ran on the same queries and seeds)."""
    return stats.paired_difference(a.scores[metric], b.scores[metric])

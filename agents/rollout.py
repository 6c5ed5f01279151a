"""Running many PromptLoop episodes in lockstep, through one small batched-env interface.

Every learner and evaluator here goes through :func:`run_episodes`, which talks to an :class:`EnvBatch`:
``reset(seeds, queries)`` and ``step(prompts)`` over lists. :func:`make_env_batch` builds one from the
registered env, preferring the batched vector env (one model call per denoising step for all episodes) and
falling back to a list of single envs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from promptloop_agents.processing import scalar

Observation = dict[str, Any]
ActFn = Callable[[list[Observation]], list[str]]


class EnvBatch(Protocol):
    """``num_envs`` PromptLoop episodes stepped together, each with ``num_refinements`` decisions."""

    num_envs: int
    num_refinements: int

    def reset(self, seeds: Sequence[int], queries: Sequence[str]) -> tuple[list[Observation], list[dict]]: ...

    def step(self, prompts: Sequence[str]) -> tuple[list[Observation], np.ndarray, np.ndarray, list[dict]]: ...

    def close(self) -> None: ...


class ListEnvBatch:
    """An :class:`EnvBatch` over a list of single Gymnasium envs, stepped one after the other."""

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        self.envs = list(envs)
        self.num_envs = len(self.envs)
        self.num_refinements = int(self.envs[0].observation_space["segment"].n) - 1

    def reset(self, seeds: Sequence[int], queries: Sequence[str]) -> tuple[list[Observation], list[dict]]:
        results = [
            env.reset(seed=int(seed), options={"query": query})
            for env, seed, query in zip(self.envs, seeds, queries, strict=True)
        ]
        return [r[0] for r in results], [r[1] for r in results]

    def step(self, prompts: Sequence[str]) -> tuple[list[Observation], np.ndarray, np.ndarray, list[dict]]:
        results = [env.step(prompt) for env, prompt in zip(self.envs, prompts, strict=True)]
        rewards = np.array([r[1] for r in results], dtype=np.float64)
        terminated = np.array([r[2] or r[3] for r in results])
        return [r[0] for r in results], rewards, terminated, [r[4] for r in results]

    def close(self) -> None:
        for env in self.envs:
            env.close()


class VectorEnvBatch:
    """An :class:`EnvBatch` over a Gymnasium vector env whose ``reset`` takes ``options={"query": [...]}``."""

    def __init__(self, vector_env: gym.vector.VectorEnv) -> None:
        self.env = vector_env
        self.num_envs = vector_env.num_envs
        self.num_refinements = int(vector_env.single_observation_space["segment"].n) - 1

    def _split(self, batched: dict[str, Any]) -> list[Observation]:
        # Copies: a vector env may write its next observation into the same buffers.
        return [{key: _copy(value[i]) for key, value in batched.items()} for i in range(self.num_envs)]

    def _split_infos(self, infos: dict[str, Any]) -> list[dict]:
        """Per-episode info dicts from a vector env's dict of arrays with ``_key`` presence masks (nested too)."""
        out: list[dict] = [{} for _ in range(self.num_envs)]
        for key, value in infos.items():
            if key.startswith("_"):
                continue
            present = infos.get(f"_{key}", [True] * self.num_envs)
            parts = self._split_infos(value) if isinstance(value, dict) else None
            for i in range(self.num_envs):
                if present[i]:
                    out[i][key] = parts[i] if parts is not None else _copy(value[i])
        return out

    def reset(self, seeds: Sequence[int], queries: Sequence[str]) -> tuple[list[Observation], list[dict]]:
        obs, infos = self.env.reset(seed=[int(s) for s in seeds], options={"query": list(queries)})
        return self._split(obs), self._split_infos(infos)

    def step(self, prompts: Sequence[str]) -> tuple[list[Observation], np.ndarray, np.ndarray, list[dict]]:
        obs, rewards, terminated, truncated, infos = self.env.step(tuple(prompts))
        done = np.logical_or(terminated, truncated)
        return self._split(obs), np.asarray(rewards, dtype=np.float64), done, self._split_infos(infos)

    def close(self) -> None:
        self.env.close()


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else value


def make_env_batch(
    num_envs: int, env_id: str = "PromptLoop-v0", vectorize: bool = True, **env_kwargs: Any
) -> EnvBatch:
    """Build ``num_envs`` envs behind the :class:`EnvBatch` interface.

    Args:
        num_envs: episodes stepped together.
        env_id: a registered env id.
        vectorize: try ``gym.make_vec(..., vectorization_mode="vector_entry_point")`` first (batched denoising);
            fall back to a list of single envs when the env has no vector entry point.
        env_kwargs: passed to the env (``backbone``, ``reward``, ``num_refinements``, ...).
    """
    import promptloop_env  # noqa: F401  (registers PromptLoop-v0)

    if vectorize and gym.spec(env_id).vector_entry_point is not None:
        try:
            vector_env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs)
        except (ImportError, AttributeError, gym.error.Error):
            pass  # no batched env available: fall back to single envs
        else:
            return VectorEnvBatch(vector_env)
    first = gym.make(env_id, **env_kwargs)
    return ListEnvBatch([first] + [gym.make(env_id, **env_kwargs) for _ in range(num_envs - 1)])


@dataclass
class Episode:
    """One finished episode: the prompts written, the terminal reward and (optionally) the pictures."""

    query: str
    seed: int
    prompts: list[str] = field(default_factory=list)
    timesteps: list[float] = field(default_factory=list)
    reward: float = 0.0
    reward_components: dict[str, float] = field(default_factory=dict)
    previews: list[np.ndarray] = field(default_factory=list)
    final_image: np.ndarray | None = None


@dataclass
class RolloutTimes:
    """Wall-clock seconds spent in the env (denoising, previews, reward) and in the policy."""

    env: float = 0.0
    policy: float = 0.0


def run_episodes(
    envs: EnvBatch,
    act: ActFn,
    queries: Sequence[str],
    seeds: Sequence[int],
    keep_images: bool = False,
    times: RolloutTimes | None = None,
) -> list[Episode]:
    """Run one episode per ``(query, seed)``, ``envs.num_envs`` at a time, all stepped in lockstep.

    Args:
        envs: the batched env.
        act: maps a list of observations (one per running episode) to as many prompts.
        queries, seeds: one per episode; their count must be a multiple of ``envs.num_envs`` or smaller.
        keep_images: keep every preview and the final image in the returned episodes.
        times: accumulates the seconds spent in the env and in ``act``.
    """
    if len(queries) != len(seeds):
        raise ValueError(f"Got {len(queries)} queries but {len(seeds)} seeds.")
    times = times if times is not None else RolloutTimes()
    episodes: list[Episode] = []
    n = envs.num_envs
    for start in range(0, len(queries), n):
        chunk_q, chunk_s = list(queries[start : start + n]), [int(s) for s in seeds[start : start + n]]
        real = len(chunk_q)
        if real < n:  # pad the last chunk; the extra episodes are dropped
            chunk_q += [chunk_q[-1]] * (n - real)
            chunk_s += [chunk_s[-1]] * (n - real)
        batch = [Episode(q, s) for q, s in zip(chunk_q, chunk_s, strict=True)]
        tick = time.perf_counter()
        obs, _ = envs.reset(chunk_s, chunk_q)
        times.env += time.perf_counter() - tick
        done = np.zeros(n, dtype=bool)
        while not done.all():
            tick = time.perf_counter()
            prompts = act(obs)
            times.policy += time.perf_counter() - tick
            for episode, o, prompt in zip(batch, obs, prompts, strict=True):
                episode.prompts.append(prompt)
                episode.timesteps.append(scalar(o["timestep"]))
                if keep_images:
                    episode.previews.append(np.asarray(o["image"]).copy())
            tick = time.perf_counter()
            obs, rewards, done, infos = envs.step(prompts)
            times.env += time.perf_counter() - tick
        for episode, reward, info in zip(batch, rewards, infos, strict=True):
            episode.reward = float(reward)
            episode.reward_components = {k: float(v) for k, v in info.get("reward_components", {}).items()}
            if keep_images:
                episode.final_image = np.asarray(info["final_image"]).copy()
        episodes += batch[:real]
    return episodes

"""Running many PromptLoop episodes in lockstep through a Gymnasium vector env.

Every learner and evaluator here goes through :func:`run_episodes`, which talks to a
``gymnasium.vector.VectorEnv`` whose ``reset`` takes ``options={"query": [...]}`` (one query per sub-env):
the batched ``PromptLoopVectorEnv`` that :func:`make_vector_env` builds with
``gym.make_vec(..., vectorization_mode="vector_entry_point")`` (one model call per denoising step for all
episodes). There is no silent fallback to single envs: an env id without a batched entry point is an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from promptloop_agents.policies.processing import scalar

Observation = dict[str, Any]
ActFn = Callable[[list[Observation]], list[str]]


def make_vector_env(num_envs: int, env_id: str = "PromptLoop-v0", **env_kwargs: Any) -> gym.vector.VectorEnv:
    """``num_envs`` episodes stepped together by the env's batched vector env.

    Args:
        num_envs: episodes stepped together.
        env_id: a registered env id with a ``vector_entry_point``.
        env_kwargs: passed to the env (``backbone``, ``reward``, ``num_refinements``, ...).

    Raises:
        ValueError: the env id has no batched vector entry point.
    """
    import promptloop_env  # noqa: F401  (registers PromptLoop-v0)

    if gym.spec(env_id).vector_entry_point is None:
        raise ValueError(
            f"{env_id} has no vector_entry_point: the agents need its batched vector env (queries per sub-env "
            "in reset options); register one."
        )
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs)


def num_refinements(envs: gym.vector.VectorEnv) -> int:
    """Decisions per episode of a PromptLoop vector env (its ``segment`` space counts 0..N_R)."""
    return int(envs.single_observation_space["segment"].n) - 1


def split_observations(batched: dict[str, Any], num_envs: int) -> list[Observation]:
    """Per-episode observations from a vector env's batched ``Dict`` (copies: the env may reuse its buffers)."""
    return [{key: _copy(value[i]) for key, value in batched.items()} for i in range(num_envs)]


def split_infos(infos: dict[str, Any], num_envs: int) -> list[dict]:
    """Per-episode info dicts from a vector env's dict of arrays with ``_key`` presence masks (nested too)."""
    out: list[dict] = [{} for _ in range(num_envs)]
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        present = infos.get(f"_{key}", [True] * num_envs)
        parts = split_infos(value, num_envs) if isinstance(value, dict) else None
        for i in range(num_envs):
            if present[i]:
                out[i][key] = parts[i] if parts is not None else _copy(value[i])
    return out


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else value


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
    truncated_prompts: int = 0


@dataclass
class RolloutTimes:
    """Wall-clock seconds spent in the env (denoising, previews, reward) and in the policy."""

    env: float = 0.0
    policy: float = 0.0


def run_episodes(
    envs: gym.vector.VectorEnv,
    act: ActFn,
    queries: Sequence[str],
    seeds: Sequence[int],
    keep_images: bool = False,
    times: RolloutTimes | None = None,
) -> list[Episode]:
    """Run one episode per ``(query, seed)``, ``envs.num_envs`` at a time, all stepped in lockstep.

    Args:
        envs: the vector env.
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
        batched, _ = envs.reset(seed=chunk_s, options={"query": chunk_q})
        obs = split_observations(batched, n)
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
            batched, rewards, terminated, truncated, batched_infos = envs.step(tuple(prompts))
            times.env += time.perf_counter() - tick
            obs, infos = split_observations(batched, n), split_infos(batched_infos, n)
            done = np.logical_or(terminated, truncated)
            for episode, info in zip(batch, infos, strict=True):
                episode.truncated_prompts += int(bool(info.get("prompt_truncated", False)))
        for episode, reward, info in zip(batch, rewards, infos, strict=True):
            episode.reward = float(reward)
            episode.reward_components = {k: float(v) for k, v in info.get("reward_components", {}).items()}
            if keep_images:
                episode.final_image = np.asarray(info["final_image"]).copy()
        episodes += batch[:real]
    return episodes


def load_queries(spec: str, max_queries: int = 0, seed: int = 0) -> list[str]:
    """Queries of a prompt set by name or a prompt file's path (:func:`promptloop_env.prompts.load_prompts`).

    ``max_queries`` > 0 draws that many across the set's categories with ``seed``; the set's metadata (GenEval's)
    stays available to the rewards that need it.
    """
    from promptloop_env.prompts import load_prompts

    return list(load_prompts(spec, max_queries, seed))

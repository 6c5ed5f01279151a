"""Helpers for tests and benchmarks: cached tiny pipelines and a plain episode loop (no network)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_PIPES: dict[tuple, Any] = {}


def tiny_pipe(scheduler: str = "ddim", prediction_type: str = "epsilon", size: str = "tiny") -> Any:
    """A cached tiny ``StableDiffusionPipeline`` (the env never mutates its weights, so sharing is safe)."""
    from promptloop_env.backbones.tiny import tiny_stable_diffusion_pipeline

    key = (scheduler, prediction_type, size)
    if key not in _PIPES:
        _PIPES[key] = tiny_stable_diffusion_pipeline(size=size, scheduler=scheduler, prediction_type=prediction_type)
    return _PIPES[key]


def run_episode(env: Any, query: str, seed: int, actions: Sequence[str] | None = None) -> tuple[dict, float, dict]:
    """Play one episode with ``actions`` (default: the query every time); returns the last obs, reward, info."""
    obs, info = env.reset(seed=seed, options={"query": query})
    terminated, i, reward = False, 0, 0.0
    while not terminated:
        obs, reward, terminated, _, info = env.step(query if actions is None else actions[i])
        i += 1
    return obs, reward, info

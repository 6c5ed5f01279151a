"""Tiny pipelines of every non-SD family, built once per test session, and the env and pipeline calls of the tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

torch.set_num_threads(1)

# name -> (builder kwargs, guidance scale used by the tests)
FAMILY_CASES: dict[str, tuple[str, dict[str, Any], float]] = {
    "sdxl": ("tiny_stable_diffusion_xl_pipeline", {}, 5.0),
    "sdxl-turbo": (
        "tiny_stable_diffusion_xl_pipeline",
        {"scheduler": "euler-ancestral", "timestep_spacing": "trailing"},
        0.0,
    ),
    "sd3": ("tiny_stable_diffusion_3_pipeline", {}, 5.0),
    "sd3-no-t5": ("tiny_stable_diffusion_3_pipeline", {"with_t5": False}, 5.0),
    "flux-dev": ("tiny_flux_pipeline", {}, 3.5),
    "flux-schnell": ("tiny_flux_pipeline", {"guidance_embeds": False}, 0.0),
}

_PIPES: dict[str, Any] = {}


def family_pipe(name: str) -> Any:
    """The cached tiny pipeline of a case in :data:`FAMILY_CASES` (the env never mutates its weights)."""
    if name not in _PIPES:
        from promptloop_env.backbones import tiny

        builder, kwargs, _ = FAMILY_CASES[name]
        _PIPES[name] = getattr(tiny, builder)(**kwargs)
    return _PIPES[name]


def guidance(name: str) -> float:
    return FAMILY_CASES[name][2]


def make_family_env(backbone: Any, **kwargs: Any) -> Any:
    import gymnasium as gym

    import promptloop_env  # noqa: F401

    defaults = {
        "reward": "jpeg-incompressibility",
        "num_inference_steps": 4,
        "num_refinements": 2,
        "preview": "latent_rgb",
        "preview_size": 32,
    }
    return gym.make("PromptLoop-v0", backbone=backbone, **{**defaults, **kwargs})


def pipeline_image(pipe: Any, query: str, seed: int, steps: int, **kwargs: Any) -> np.ndarray:
    """Plain diffusers ``__call__`` with the episode's noise seed, as uint8 HxWx3."""
    generator = torch.Generator("cpu").manual_seed(seed)
    out = pipe(query, num_inference_steps=steps, generator=generator, output_type="np", **kwargs).images
    return (out * 255).round().astype(np.uint8)[0]

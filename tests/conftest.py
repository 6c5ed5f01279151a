"""Shared fixtures: tiny pipelines built in-process, no network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread: bit-exact replay needs a fixed thread count, and the CI machine has two shared cores.
torch.set_num_threads(1)

_PIPES: dict[tuple, object] = {}


def tiny_pipe(scheduler: str = "ddim", prediction_type: str = "epsilon", size: str = "tiny"):
    """A cached tiny StableDiffusionPipeline (weights never mutated by the env)."""
    from promptloop_env.backbones.tiny import tiny_stable_diffusion_pipeline

    key = (scheduler, prediction_type, size)
    if key not in _PIPES:
        _PIPES[key] = tiny_stable_diffusion_pipeline(size=size, scheduler=scheduler, prediction_type=prediction_type)
    return _PIPES[key]


@pytest.fixture
def make_env():
    """Factory for small PromptLoop envs on the tiny backbone; closes them afterwards."""
    import gymnasium as gym

    import promptloop_env  # noqa: F401

    envs = []

    def factory(**kwargs):
        defaults = {
            "backbone": tiny_pipe(),
            "reward": "jpeg-incompressibility",
            "num_inference_steps": 8,
            "num_refinements": 4,
            "preview": "latent_rgb",
            "preview_size": 32,
        }
        env = gym.make("PromptLoop-v0", **{**defaults, **kwargs})
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.close()

"""Shared fixtures: tiny pipelines built in-process, no network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread: bit-exact replay needs a fixed thread count, and the CI machine has two shared cores.
torch.set_num_threads(1)

from promptloop_env.testing import tiny_pipe  # noqa: E402


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

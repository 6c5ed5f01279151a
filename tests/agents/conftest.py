"""Fixtures for the agent tests: the tiny backbone and a tiny toy policy, built in-process."""

from __future__ import annotations

import pytest
import torch

from promptloop_agents.policies.toy_policy import build_toy_policy, world_words
from promptloop_agents.rollout import make_vector_env

torch.set_num_threads(1)

TINY_ENV = {
    "backbone": "tiny",
    "reward": "jpeg-incompressibility",
    "num_inference_steps": 4,
    "num_refinements": 2,
    "preview_size": 32,
}
QUERIES = ["a red circle on the left", "a large blue square", "a small green triangle", "a yellow circle"]


@pytest.fixture
def envs():
    """Four tiny envs stepped together."""
    batch = make_vector_env(4, refine_schedule="random", **TINY_ENV)
    yield batch
    batch.close()


@pytest.fixture
def env_kwargs():
    """The tiny env's keyword arguments (without the refinement schedule)."""
    return dict(TINY_ENV)


@pytest.fixture
def policy():
    """A randomly initialised tiny toy policy (Qwen2.5-VL family)."""
    return build_toy_policy("tiny", words=world_words(), max_new_tokens=8)


@pytest.fixture
def queries():
    """A few training queries."""
    return list(QUERIES)

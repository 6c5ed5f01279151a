"""Rewards: plain batched callables ``reward(images, queries) -> sequence of floats``.

``images`` is a ``uint8`` array ``[B, H, W, 3]`` and ``queries`` the user queries (never the refined
prompts). ``REWARDS`` (a :class:`~promptloop_env.registry.Registry`) maps a name to a factory, registered by the
module that defines it (``@REWARDS.register("name")``); the factory is called as
``factory(device=..., torch_dtype=...)``, takes ``**kwargs`` and ignores what it does not use, and returns the
callable. :func:`make_reward` has model-based rewards load their weights at once,
so that a missing weight or dependency is one clear error at ``gym.make``, before any denoising.
"""

from __future__ import annotations

from promptloop_env.rewards.base import (
    REWARDS,
    RewardFn,
    RewardSpec,
    WeightedReward,
    call_reward,
    make_reward,
)
from promptloop_env.rewards.model_base import MissingWeightsError

__all__ = ["REWARDS", "MissingWeightsError", "RewardFn", "RewardSpec", "WeightedReward", "call_reward", "make_reward"]

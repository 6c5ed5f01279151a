"""Rewards: plain batched callables ``reward(images, queries) -> sequence of floats``.

``images`` is a ``uint8`` array ``[B, H, W, 3]`` and ``queries`` the user queries (never the refined
prompts). ``REWARDS`` maps a name to ``"module:factory"``; the factory is called as
``factory(device=..., torch_dtype=...)`` and returns the callable, so model-based rewards load their
weights lazily and only when named.
"""

from __future__ import annotations

from promptloop_env.rewards.base import (
    RewardFn,
    RewardSpec,
    WeightedReward,
    call_reward,
    make_reward,
)

REWARDS: dict[str, str] = {
    "jpeg-compressibility": "promptloop_env.rewards.jpeg:JpegCompressibility",
    "jpeg-incompressibility": "promptloop_env.rewards.jpeg:JpegIncompressibility",
    "toy-fidelity": "promptloop_env.toy.rewards:ToyFidelity",
    "toy-aesthetic": "promptloop_env.toy.rewards:ToyAesthetic",
    "aesthetic": "promptloop_env.rewards.aesthetic:LaionAesthetic",
    "clip-score": "promptloop_env.rewards.clip_score:ClipScore",
    "pickscore": "promptloop_env.rewards.pickscore:PickScore",
    "imagereward": "promptloop_env.rewards.imagereward:ImageRewardScore",
    "hpsv2": "promptloop_env.rewards.hps:HPSv2",
}

__all__ = ["REWARDS", "RewardFn", "RewardSpec", "WeightedReward", "call_reward", "make_reward"]

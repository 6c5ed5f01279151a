"""Rewards: plain batched callables ``reward(images, queries) -> sequence of floats``.

``images`` is a ``uint8`` array ``[B, H, W, 3]`` and ``queries`` the user queries (never the refined
prompts). ``REWARDS`` maps a name to ``"module:factory"``, imported only when the name is used; the
factory is called as ``factory(device=..., torch_dtype=...)``, takes ``**kwargs`` and ignores what it does
not use, and returns the callable. :func:`make_reward` has model-based rewards load their weights at once,
so that a missing weight or dependency is one clear error at ``gym.make``, before any denoising.
"""

from __future__ import annotations

from promptloop_env.rewards.base import (
    RewardFn,
    RewardSpec,
    WeightedReward,
    call_reward,
    make_reward,
)
from promptloop_env.rewards.model_base import MissingWeightsError

REWARDS: dict[str, str] = {
    "jpeg-compressibility": "promptloop_env.rewards.jpeg:JpegCompressibility",
    "jpeg-incompressibility": "promptloop_env.rewards.jpeg:JpegIncompressibility",
    "toy-fidelity": "promptloop_env.toy.rewards:ToyFidelity",
    "toy-aesthetic": "promptloop_env.toy.rewards:ToyAesthetic",
    "toy-compose": "promptloop_env.toy.rewards:ToyCompose",
    "toy-compose-soft": "promptloop_env.toy.rewards:toy_compose_soft",
    "toy-compose-aesthetic": "promptloop_env.toy.rewards:ToyComposeAesthetic",
    "aesthetic": "promptloop_env.rewards.aesthetic:LaionAesthetic",
    "clip-score": "promptloop_env.rewards.clip_score:ClipScore",
    "pickscore": "promptloop_env.rewards.pickscore:PickScore",
    "imagereward": "promptloop_env.rewards.imagereward:ImageRewardScore",
    "hpsv2": "promptloop_env.rewards.hps:HPSv2",
}

__all__ = ["REWARDS", "MissingWeightsError", "RewardFn", "RewardSpec", "WeightedReward", "call_reward", "make_reward"]

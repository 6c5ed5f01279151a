"""Rewards that belong to a world: a toy backbone's own reward, and refusing another world's.

A toy world's backbone names its world and its default reward (its :data:`~promptloop_env.backbones.BACKBONES`
entry's options ``world`` and ``default_reward``); a toy reward names the world whose queries and images it reads
(a ``world`` attribute). ``reward=None`` is the backbone's own; a reward of another world is an error, since it
would score every image against a world it cannot read (``toy-fidelity`` scores one object, ``toy-compose``
draws up to four). Rewards and backbones without a world (model-based rewards, hub models, local folders) mix
freely.
"""

from __future__ import annotations

from typing import Any


def world_reward(reward: Any, backbone: Any) -> Any:
    """``reward``, or the backbone's own world reward when ``reward`` is None.

    Raises:
        ValueError: ``reward`` is None and the backbone has no world reward of its own (the message says what
            to pass).
    """
    if reward is not None:
        return reward
    default = getattr(backbone, "default_reward", None)
    if default is None:
        from promptloop_env.rewards import REWARDS

        raise ValueError(
            f"reward=None means the backbone's own world reward, and backbone {backbone_name(backbone)!r} has "
            f"none: name one, e.g. reward='imagereward' (registered rewards: {', '.join(sorted(REWARDS))}), a "
            "callable(images, queries) -> floats, or {name: weight}."
        )
    return default


def check_reward_world(reward_fn: Any, backbone: Any) -> None:
    """Refuse reward parts of another world than the backbone's.

    Raises:
        ValueError: a part's ``world`` differs from the backbone's (the message names both and the right reward).
    """
    world = getattr(backbone, "world", None)
    if world is None:
        return
    for name, fn, _ in reward_fn.parts:
        other = getattr(fn, "world", None)
        if other is not None and other != world:
            own = getattr(backbone, "default_reward", None)
            raise ValueError(
                f"Reward {name!r} scores the {other} world, but backbone {backbone_name(backbone)!r} draws the "
                f"{world} world, whose queries and images it cannot read. Use reward={own!r} (its own, also what "
                "reward=None gives) or another reward of that world."
            )


def default_prompts(reward_fn: Any, backbone: Any) -> str | None:
    """The prompt set ``prompts=None`` means: the backbone's world's, else the world's of a toy reward part.

    A backbone without a world (``tiny``, a folder) scored by a toy reward draws that reward's world's queries.
    """
    if getattr(backbone, "default_prompts", None):
        return backbone.default_prompts
    return next((fn.default_prompts for _, fn, _ in reward_fn.parts if getattr(fn, "default_prompts", None)), None)


def backbone_name(backbone: Any) -> str:
    """The name the backbone was asked by (its registry name, folder or hub id), for messages."""
    name = getattr(backbone, "name", None) or getattr(backbone.pipe, "name_or_path", None)
    return str(name) if name else f"a loaded {type(backbone.pipe).__name__}"

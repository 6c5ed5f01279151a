"""Reward protocol, construction from a spec, validation and weighted sums."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from promptloop_env.registry import Registry


class RewardFn(Protocol):
    """A batched reward: ``uint8 [B, H, W, 3]`` images and ``B`` queries in, ``B`` floats out."""

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> Sequence[float]: ...


RewardSpec = str | RewardFn | Mapping[Any, float]

REWARDS: Registry[Any] = Registry("reward", discover=__package__)
"""The named rewards: a factory ``factory(device=..., torch_dtype=..., **kwargs) -> RewardFn`` per name.

Each reward module registers its own with ``@REWARDS.register("name")``; reading the registry the first time
imports every module of :mod:`promptloop_env.rewards` (model-based rewards import transformers inside their
factories, so this is cheap). The toy worlds register theirs in :mod:`promptloop_env.toy.rewards`."""


def _split_part(part: Any) -> tuple[str | None, Any]:
    """``(explicit name or None, reward)`` of a ``{part: weight}`` key (a pair, a registry name, a callable)."""
    if isinstance(part, tuple):
        if len(part) != 2 or not isinstance(part[0], str):
            raise TypeError(f"A named reward part is a (name, name_or_callable) pair; got {part!r}.")
        return part
    return (part if isinstance(part, str) else None), part


def _unique_names(parts: Sequence[Any]) -> list[str]:
    """One distinct name per part: explicit names as given, derived names suffixed ``_1``, ``_2``... on a clash.

    Explicit names are registry names and the names of ``(name, reward)`` pairs; derived ones are a callable's
    ``__name__``, else its class name.

    >>> _unique_names(["toy-fidelity", lambda i, q: i, lambda i, q: q, ("sharpness", len)])
    ['toy-fidelity', '<lambda>', '<lambda>_1', 'sharpness']

    Raises:
        ValueError: two parts have the same explicit name.
    """
    explicit = [name for name, _ in map(_split_part, parts) if name is not None]
    clashes = sorted({name for name in explicit if explicit.count(name) > 1})
    if clashes:
        raise ValueError(f"Reward parts must have distinct names; {clashes} named more than once.")
    taken = set(explicit)
    names = []
    for part in parts:
        name, reward = _split_part(part)
        if name is None:
            base = name = getattr(reward, "__name__", type(reward).__name__)
            k = 0
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            taken.add(name)
        names.append(name)
    return names


def _build_one(part: Any, device: str | torch.device | None, torch_dtype: torch.dtype | None) -> RewardFn:
    from promptloop_env.rewards.model_base import ModelReward

    part = _split_part(part)[1]
    if isinstance(part, str):
        part = REWARDS[part](device=device, torch_dtype=torch_dtype)
    if isinstance(part, ModelReward):
        part.load()  # find the weights now, before any denoising, and fail with one clear error if they are missing
    if callable(part):
        return part
    raise TypeError(
        f"reward must be a registered name, a callable(images, queries) -> floats, or a dict of those to "
        f"weights; got {type(part).__name__}."
    )


def call_reward(fn: RewardFn, images: np.ndarray, queries: Sequence[str], name: str = "reward") -> np.ndarray:
    """Call ``fn`` and check that it returned one finite float per image.

    Raises:
        ValueError: wrong number of values, or a NaN / infinite value.
    """
    values = fn(images, list(queries))
    try:
        out = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"Reward {name!r} must return a sequence of floats; got {type(values).__name__}.") from err
    if out.shape != (len(queries),):
        raise ValueError(f"Reward {name!r} returned {out.size} values for a batch of {len(queries)} images.")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"Reward {name!r} returned a non-finite value: {out.tolist()}.")
    return out


class WeightedReward:
    """A weighted sum of rewards; :meth:`components` also returns each part, by name.

    A part is a registry name, a callable, or a ``(name, name_or_callable)`` pair that names it. Registry
    names and given names are used as they are (twice the same is an error); a callable is called by its
    ``__name__`` (or class name), suffixed ``_1``, ``_2``... where two parts would share one (two lambdas,
    two instances of one reward class).
    Model-based parts (:class:`~promptloop_env.rewards.model_base.ModelReward`) load their weights here, so
    that a missing weight or dependency fails at ``gym.make``, not after the first episode.

    Args:
        parts: ``{name_or_callable: weight}`` (keys may also be ``(name, name_or_callable)``).
        device, torch_dtype: passed to model-based rewards built by name.

    Raises:
        ValueError: an empty dict, a weight that is not a finite number, two parts with one explicit name.
        TypeError: a part that is neither a registry name nor a callable.

    >>> reward = WeightedReward({lambda images, queries: [1.0]: 1.0, lambda images, queries: [10.0]: 1.0})
    >>> reward.components(None, ["a query"]), reward(None, ["a query"])
    ({'<lambda>': array([1.]), '<lambda>_1': array([10.])}, array([11.]))
    """

    def __init__(
        self,
        parts: Mapping[Any, float],
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> None:
        if not parts:
            raise ValueError("A reward dict needs at least one {name_or_callable: weight} entry.")
        names = _unique_names(list(parts))
        for name, weight in zip(names, parts.values(), strict=True):
            if not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"Reward weight for {name!r} must be a finite number; got {weight!r}.")
        self.parts: list[tuple[str, RewardFn, float]] = [
            (name, _build_one(part, device, torch_dtype), float(weight))
            for name, (part, weight) in zip(names, parts.items(), strict=True)
        ]

    def check_queries(self, queries: Sequence[str], where: str = "queries") -> None:
        """Refuse queries a part cannot score: empty ones, and those a part's ``check_queries`` refuses.

        A reward may define ``check_queries(queries)`` raising ``ValueError`` for queries it cannot read (the toy
        worlds' rewards refuse words outside their world); the env calls this on its prompt set and on every
        query given at reset, so that no such query is ever scored.

        Raises:
            ValueError: an empty query, or one a part refuses (the message says where it came from).
        """
        empty = [i for i, query in enumerate(queries) if not query.strip()]
        if empty:
            raise ValueError(f"{where}: query {empty[0]} is empty; every query must say what the image should show.")
        for name, fn, _ in self.parts:
            check = getattr(fn, "check_queries", None)
            if check is not None:
                try:
                    check(queries)
                except ValueError as err:
                    raise ValueError(f"{where}: reward {name!r} cannot score {err}") from None

    def components(self, images: np.ndarray, queries: Sequence[str]) -> dict[str, np.ndarray]:
        """Each part's values, unweighted, by name."""
        return {name: call_reward(fn, images, queries, name) for name, fn, _ in self.parts}

    def combine(self, components: Mapping[str, np.ndarray]) -> np.ndarray:
        """The weighted sum of values returned by :meth:`components`."""
        return sum(weight * components[name] for name, _, weight in self.parts)

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> np.ndarray:
        return self.combine(self.components(images, queries))


def make_reward(
    spec: RewardSpec, device: str | torch.device | None = None, torch_dtype: torch.dtype | None = None
) -> WeightedReward:
    """Build a :class:`WeightedReward` from a name, a callable or a ``{part: weight}`` dict.

    >>> r = make_reward("jpeg-incompressibility")
    >>> [name for name, _, _ in r.parts]
    ['jpeg-incompressibility']
    """
    if isinstance(spec, Mapping):
        return WeightedReward(spec, device, torch_dtype)
    return WeightedReward({spec: 1.0}, device, torch_dtype)

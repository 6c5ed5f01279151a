"""Reward protocol, construction from a spec, validation and weighted sums."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from promptloop_env.registry import lookup, resolve


class RewardFn(Protocol):
    """A batched reward: ``uint8 [B, H, W, 3]`` images and ``B`` queries in, ``B`` floats out."""

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> Sequence[float]: ...


RewardSpec = str | RewardFn | Mapping[Any, float]


def _component_name(part: Any) -> str:
    return part if isinstance(part, str) else getattr(part, "__name__", type(part).__name__)


def _build_one(part: Any, device: str | torch.device | None, torch_dtype: torch.dtype | None) -> RewardFn:
    from promptloop_env.rewards import REWARDS

    if isinstance(part, str):
        factory = resolve(lookup(REWARDS, part, "reward"))
        return factory(device=device, torch_dtype=torch_dtype)
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
    """A weighted sum of rewards; :meth:`components` also returns each part.

    Args:
        parts: ``{name_or_callable: weight}``.
        device, torch_dtype: passed to model-based rewards built by name.
    """

    def __init__(
        self,
        parts: Mapping[Any, float],
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> None:
        if not parts:
            raise ValueError("A reward dict needs at least one {name_or_callable: weight} entry.")
        self.parts: list[tuple[str, RewardFn, float]] = []
        for part, weight in parts.items():
            if not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(
                    f"Reward weight for {_component_name(part)!r} must be a finite number; got {weight!r}."
                )
            self.parts.append((_component_name(part), _build_one(part, device, torch_dtype), float(weight)))

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


RewardFactory = Callable[..., RewardFn]

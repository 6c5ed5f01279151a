"""The toy world's rewards, computed exactly by the analyser: ``toy-fidelity`` and ``toy-aesthetic``.

Both are plain batched callables ``reward(images: uint8 [B, H, W, 3], queries) -> list[float]`` and take
images of any size (previews are resized, the model's own images are 64x64).

>>> import numpy as np
>>> from promptloop_env.toy.world import Scene, render
>>> image = render(Scene("circle", "red", "large", "left", "gray"))[None]
>>> ToyFidelity()(image, ["a small red circle on the left"])
[0.75]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from promptloop_env.toy import compose_analyser, compose_spec
from promptloop_env.toy.analyser import Analysis, analyse
from promptloop_env.toy.world import parse_query


def fidelity(analysis: Analysis, query: str) -> float:
    """Fraction of the attributes ``query`` names that the analysed image satisfies.

    Every query of the world asks for one object, so an image where none is found scores 0.0 (even when its
    background is right), and a query that names no attribute ("a shape") scores 1.0 if an object is found.
    """
    if not analysis.found:
        return 0.0
    named = parse_query(query)
    if not named:
        return 1.0
    read = analysis.attributes()
    return sum(read.get(name) == value for name, value in named.items()) / len(named)


def aesthetic(analysis: Analysis) -> float:
    """The world's stated visual taste, in [0, 1]: large, centred, high-contrast objects.

    The mean of three terms: size (bounding-box side / half the image side, capped at 1; small shapes ~0.45,
    large ~0.9), centring (1 at the centre, 0 at 16 pixels or more away, where the side positions are) and
    contrast (object/background RGB distance over the largest possible). Queries never ask for it, and it
    disagrees with them when they ask for small, off-centre or low-contrast scenes (a green shape on teal),
    so optimising it alone over-optimises against fidelity. No object scores 0.0.
    """
    if not analysis.found:
        return 0.0
    size = min(1.0, analysis.extent / 0.5)
    offset = float(np.hypot(analysis.centre[0] - 0.5, analysis.centre[1] - 0.5))
    centring = max(0.0, 1.0 - offset / 0.25)
    return (size + centring + analysis.contrast) / 3.0


def _analyse_all(images: np.ndarray, queries: Sequence[str], read: Callable = analyse) -> list:
    if len(images) != len(queries):
        raise ValueError(f"Got {len(images)} images for {len(queries)} queries.")
    return [read(image) for image in images]


class ToyFidelity:
    """``toy-fidelity``: fraction of the query's named attributes that the image satisfies (see :func:`fidelity`).

    Args:
        **kwargs: reward-factory arguments (``device``, ``torch_dtype``), accepted and ignored (no model).
    """

    def __init__(self, **kwargs: object) -> None:
        pass

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        return [fidelity(a, q) for a, q in zip(_analyse_all(images, queries), queries, strict=True)]


class ToyAesthetic:
    """``toy-aesthetic``: large, centred, high-contrast objects, whatever the query (see :func:`aesthetic`).

    Args:
        **kwargs: reward-factory arguments (``device``, ``torch_dtype``), accepted and ignored (no model).
    """

    def __init__(self, **kwargs: object) -> None:
        pass

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        return [aesthetic(a) for a in _analyse_all(images, queries)]


class ToyCompose:
    """``toy-compose``: GenEval's rule on the compositional world, 1.0 if every constraint of the query holds.

    The query is read by :func:`promptloop_env.toy.compose_spec.parse`, the image by
    :func:`promptloop_env.toy.compose_analyser.analyse` (see :func:`~promptloop_env.toy.compose_spec.constraints`).

    Args:
        soft: score the fraction of the constraints that hold instead (``toy-compose-soft``).
        **kwargs: reward-factory arguments (``device``, ``torch_dtype``), accepted and ignored (no model).
    """

    def __init__(self, soft: bool = False, **kwargs: object) -> None:
        self.soft = soft

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        score = compose_spec.soft_score if self.soft else compose_spec.strict_score
        analyses = _analyse_all(images, queries, compose_analyser.analyse)
        return [score(a, query) for a, query in zip(analyses, queries, strict=True)]


def toy_compose_soft(**kwargs: object) -> ToyCompose:
    """``toy-compose-soft``: the fraction of the query's constraints that hold (see :class:`ToyCompose`)."""
    return ToyCompose(soft=True)

"""The toy worlds' rewards, computed exactly by the analysers: ``toy-fidelity``, ``toy-aesthetic``, ``toy-compose``
(strict), ``toy-compose-soft`` and the proxy ``toy-compose-aesthetic``.

All are plain batched callables ``reward(images: uint8 [B, H, W, 3], queries) -> list[float]`` and take
images of any size (previews are resized, the model's own images are 64x64).

>>> import numpy as np
>>> from promptloop_env.toy.world import Scene, render
>>> image = render(Scene("circle", "red", "large", "left", "gray"))[None]
>>> ToyFidelity()(image, ["a small red circle on the left"])
[0.75]
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from promptloop_env.rewards import REWARDS
from promptloop_env.toy import compose_analyser, compose_spec
from promptloop_env.toy.analyser import Analysis, analyse
from promptloop_env.toy.compose import HALF_EXTENTS, MAX_OBJECTS
from promptloop_env.toy.tokenizer import COMPOSE_WORDS, world_words
from promptloop_env.toy.world import COLOURS, parse_query

COMPOSE_AESTHETIC_BACKGROUND = "black"
"""The background ``toy-compose-aesthetic`` likes."""
_SATURATION = {name: colorsys.rgb_to_hsv(*(v / 255 for v in rgb))[1] for name, rgb in COLOURS.items()}


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


def compose_aesthetic(analysis: compose_analyser.ComposeAnalysis) -> float:
    """A proxy taste of the compositional world, in [0, 1]: many, large, saturated objects on black.

    The mean of four terms: how many objects (count / 4, capped at 1), how large (mean box side over the
    largest the world draws, 16 pixels, capped at 1), how saturated (mean HSV saturation of the objects' colours:
    about 0.9 for the six hues, 0 for white) and the background (1 on black, else 0). It never reads the query,
    so it disagrees with most of them: a query for one circle, for white shapes or for another background
    loses proxy reward by being followed. No object scores 0.0.

    >>> from promptloop_env.toy.compose import ComposeScene, Thing, render
    >>> many = ComposeScene(tuple(Thing("square", "red", x, y, 8) for x in (16, 46) for y in (16, 46)), "black")
    >>> round(compose_aesthetic(compose_analyser.analyse(render(many))), 2)
    0.98
    """
    objects = analysis.objects
    if not objects:
        return 0.0
    count = min(1.0, len(objects) / MAX_OBJECTS)
    size = min(1.0, float(np.mean([o.size for o in objects])) / (2 * max(HALF_EXTENTS)))
    saturation = float(np.mean([_SATURATION[o.colour] for o in objects]))
    background = float(analysis.background == COMPOSE_AESTHETIC_BACKGROUND)
    return (count + size + saturation + background) / 4.0


def query_words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, and its numbers (what the worlds' parsers see, and any other word).

    >>> query_words("Two RED circles, 3 squares, café!")
    ['two', 'red', 'circles', '3', 'squares', 'café']
    """
    return re.findall(r"[^\W\d_]+|\d+", text.lower())


SHAPES_VOCABULARY = frozenset(world_words()) | frozenset(
    "center backdrop bg backgrounds circles squares triangles object onto over".split()
)
"""Every word the ``toy-shapes`` world reads: its captions', its users' and its parser's words."""
COMPOSE_VOCABULARY = (
    SHAPES_VOCABULARY | frozenset(COMPOSE_WORDS) | frozenset("1 2 3 4 under beneath next there is are".split())
)
"""Every word the ``toy-compose`` world reads (the shapes world's, plus counts, plurals and relations)."""


class ToyWorldReward:
    """A reward of one toy world: it reads only that world's images and queries.

    ``world`` names the world (the env refuses it with another world's backbone), ``vocabulary`` its words, and
    :meth:`check_queries` refuses a query with other words or one that names nothing the world can check, which
    would otherwise score 1.0 on any image with an object in it.

    Args:
        **kwargs: reward-factory arguments (``device``, ``torch_dtype``), accepted and ignored (no model).
    """

    world: ClassVar[str] = "toy-shapes"
    default_prompts: ClassVar[str] = "toy-train"
    vocabulary: ClassVar[frozenset[str]] = SHAPES_VOCABULARY
    reads_queries: ClassVar[bool] = True

    def __init__(self, **kwargs: object) -> None:
        pass

    def names_something(self, query: str) -> bool:
        """Whether ``query`` names something the world can check on an image."""
        return bool(parse_query(query))

    def check_queries(self, queries: Sequence[str]) -> None:
        """Raise a ``ValueError`` naming the first query this world cannot read, and why.

        >>> ToyFidelity().check_queries(["a photo of a dog"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: query 'a photo of a dog': the toy-shapes world has no word 'dog' (it reads a, against, ...).
        """
        if not self.reads_queries:
            return
        for query in queries:
            unknown = [w for w in dict.fromkeys(query_words(query)) if w not in self.vocabulary]
            if unknown:
                words = ", ".join(repr(w) for w in unknown)
                raise ValueError(
                    f"query {query!r}: the {self.world} world has no word {words} (it reads "
                    f"{', '.join(sorted(w for w in self.vocabulary if not w.isdigit()))})."
                )
            if not self.names_something(query):
                raise ValueError(
                    f"query {query!r} names nothing the {self.world} world can check (a shape, a colour)."
                )


def _analyse_all(images: np.ndarray, queries: Sequence[str], read: Callable = analyse) -> list:
    if len(images) != len(queries):
        raise ValueError(f"Got {len(images)} images for {len(queries)} queries.")
    return [read(image) for image in images]


@REWARDS.register("toy-fidelity")
class ToyFidelity(ToyWorldReward):
    """``toy-fidelity``: fraction of the query's named attributes that the image satisfies (see :func:`fidelity`).

    Args:
        **kwargs: reward-factory arguments (``device``, ``torch_dtype``), accepted and ignored (no model).
    """

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        self.check_queries(queries)  # never a silent 1.0 for a query the world cannot read
        return [fidelity(a, q) for a, q in zip(_analyse_all(images, queries), queries, strict=True)]


@REWARDS.register("toy-aesthetic")
class ToyAesthetic(ToyWorldReward):
    """``toy-aesthetic``: large, centred, high-contrast objects, whatever the query (see :func:`aesthetic`).

    Args:
        **kwargs: reward-factory arguments (``device``, ``torch_dtype``), accepted and ignored (no model).
    """

    reads_queries = False

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        return [aesthetic(a) for a in _analyse_all(images, queries)]


@REWARDS.register("toy-compose")
class ToyCompose(ToyWorldReward):
    """``toy-compose``: GenEval's rule on the compositional world, 1.0 if every constraint of the query holds.

    The query is read by :func:`promptloop_env.toy.compose_spec.parse`, the image by
    :func:`promptloop_env.toy.compose_analyser.analyse` (see :func:`~promptloop_env.toy.compose_spec.constraints`).

    Args:
        soft: score the fraction of the constraints that hold instead (``toy-compose-soft``).
        **kwargs: reward-factory arguments (``device``, ``torch_dtype``), accepted and ignored (no model).
    """

    world = "toy-compose"
    default_prompts = "toy-compose-train"
    vocabulary = COMPOSE_VOCABULARY

    def __init__(self, soft: bool = False, **kwargs: object) -> None:
        self.soft = soft

    def names_something(self, query: str) -> bool:
        return bool(compose_spec.parse(query).groups)

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        self.check_queries(queries)  # never a silent 1.0 for a query the world cannot read
        score = compose_spec.soft_score if self.soft else compose_spec.strict_score
        analyses = _analyse_all(images, queries, compose_analyser.analyse)
        return [score(a, query) for a, query in zip(analyses, queries, strict=True)]


@REWARDS.register("toy-compose-soft")
def toy_compose_soft(**kwargs: object) -> ToyCompose:
    """``toy-compose-soft``: the fraction of the query's constraints that hold (see :class:`ToyCompose`)."""
    return ToyCompose(soft=True)


@REWARDS.register("toy-compose-aesthetic")
class ToyComposeAesthetic(ToyWorldReward):
    """``toy-compose-aesthetic``: a proxy reward that ignores the query (see :func:`compose_aesthetic`).

    The reward of the over-optimisation experiment: optimised alone (by prompts or by weights) it drifts away
    from what ``toy-compose`` (strict) measures against the query.

    Args:
        **kwargs: reward-factory arguments (``device``, ``torch_dtype``), accepted and ignored (no model).
    """

    world = "toy-compose"
    default_prompts = "toy-compose-train"
    reads_queries = False

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        return [compose_aesthetic(a) for a in _analyse_all(images, queries, compose_analyser.analyse)]

"""The compositional toy world (``toy-compose``): scenes of 1 to 4 objects and their GenEval-style texts.

Shapes and object colours are exactly those of ``toy-shapes`` (:mod:`promptloop_env.toy.world`); objects do
not overlap; one background per scene from :data:`BACKGROUNDS`. Texts come in GenEval's six categories
(:data:`CATEGORIES`), each written from a :class:`Query` (what is asked) and scored exactly against what the
analyser reads (:mod:`promptloop_env.toy.compose_analyser`, :mod:`promptloop_env.toy.compose_spec`):

=================  ===========================================  =========================================
category           caption template                             constraints (all must hold to score 1)
=================  ===========================================  =========================================
single_object      ``a circle``                                 a circle is present
two_object         ``a circle and a square``                    both present
counting           ``three triangles``                          exactly three triangles
colors             ``a blue square``                            a square, and a blue one
position           ``a circle to the left of a square``         both present, and the relation holds
color_attr         ``a red circle and a blue square``           both shapes, each in its colour
=================  ===========================================  =========================================

Any text may end with ``, <colour> background``, which adds the background as a constraint. Relations are
``to the left of``, ``to the right of``, ``above`` and ``below``, judged as GenEval judges them (centres
compared after a margin of a tenth of the two boxes' sizes; the offset's direction within 60 degrees of the
axis). Counts are ``a``/``an``/``one``, ``two``, ``three``, ``four``.

>>> import random
>>> scene = random_scene(random.Random(0))
>>> render(scene).shape
(64, 64, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from promptloop_env.geneval_rules import ObjectRecord, relation
from promptloop_env.toy.world import BACKGROUNDS, COLOURS, IMAGE_SIZE, SHAPES, RandomSource, _pick, draw_shape

CATEGORIES: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
COUNT_WORDS: dict[int, str] = {1: "a", 2: "two", 3: "three", 4: "four"}
RELATIONS: dict[str, str] = {  # relation name -> the words of the captions
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}
HALF_EXTENTS: tuple[int, ...] = (5, 6, 7, 8)  # pixels; an object spans 10 to 16 pixels
MARGIN = 2  # pixels between two objects' boxes
MAX_OBJECTS = 4


@dataclass(frozen=True)
class Thing:
    """One drawn object: shape, colour, centre ``(cx, cy)`` in pixels and half-extent ``h``."""

    shape: str
    colour: str
    cx: int
    cy: int
    h: int

    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``, inclusive pixel bounds."""
        return self.cx - self.h, self.cy - self.h, self.cx + self.h - 1, self.cy + self.h - 1


@dataclass(frozen=True)
class ComposeScene:
    """A scene: 1 to 4 non-overlapping :class:`Thing` on one background."""

    things: tuple[Thing, ...]
    background: str


@dataclass(frozen=True)
class Group:
    """Objects a text asks for: ``count`` of ``shape`` (in ``colour`` if not None)."""

    shape: str
    count: int = 1
    colour: str | None = None


@dataclass(frozen=True)
class Query:
    """What a text asks for: its category, one or two groups, a relation (group 0 to group 1), a background."""

    category: str
    groups: tuple[Group, ...]
    relation: str | None = None
    background: str | None = None

    def key(self) -> str:
        """The combination the query names, independent of its wording (used to split train and test)."""
        groups = "+".join(f"{g.count}:{g.colour or '-'}:{g.shape}" for g in self.groups)
        return f"{self.category}|{groups}|{self.relation or '-'}|{self.background or '-'}"


def render(scene: ComposeScene) -> np.ndarray:
    """Draw ``scene`` as ``uint8 (64, 64, 3)``, flat colours, no anti-aliasing."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for t in scene.things:
        draw_shape(draw, t.shape, t.cx, t.cy, t.h, COLOURS[t.colour])
    return np.asarray(image, dtype=np.uint8).copy()


def _overlaps(a: Thing, b: Thing) -> bool:
    ax0, ay0, ax1, ay1 = a.box()
    bx0, by0, bx1, by1 = b.box()
    return not (ax1 + MARGIN < bx0 or bx1 + MARGIN < ax0 or ay1 + MARGIN < by0 or by1 + MARGIN < ay0)


def place(rng: RandomSource, specs: list[tuple[str, str]], tries: int = 200) -> tuple[Thing, ...] | None:
    """Non-overlapping objects for ``specs`` (shape, colour) at random places and sizes, or None if none fit."""
    for _ in range(tries):
        things: list[Thing] = []
        for shape, colour in specs:
            h = _pick(rng, HALF_EXTENTS)
            lo, hi = h + 1, IMAGE_SIZE - h - 1
            t = Thing(shape, colour, lo + int(rng.random() * (hi - lo + 1)), lo + int(rng.random() * (hi - lo + 1)), h)
            if any(_overlaps(t, other) for other in things):
                break
            things.append(t)
        else:
            return tuple(things)
    return None


def _visible_colours(background: str) -> tuple[str, ...]:
    return tuple(c for c in COLOURS if not (c == "white" and background == "white"))


def random_scene(rng: RandomSource) -> ComposeScene:
    """A training scene: 35% one group of 1-4 copies, 65% two groups of different shapes (half of them 1 + 1)."""
    background = _pick(rng, tuple(BACKGROUNDS))
    colours = _visible_colours(background)
    if rng.random() < 0.35:
        shape, colour = _pick(rng, SHAPES), _pick(rng, colours)
        specs = [(shape, colour)] * (1 + int(rng.random() * MAX_OBJECTS))
    else:
        first, second = _sample_distinct(rng, SHAPES, 2)
        counts = (1, 1) if rng.random() < 0.5 else _pick(rng, ((1, 2), (2, 1), (2, 2)))
        specs = [(first, _pick(rng, colours))] * counts[0] + [(second, _pick(rng, colours))] * counts[1]
    things = place(rng, specs)
    return random_scene(rng) if things is None else ComposeScene(things, background)


def _sample_distinct(rng: RandomSource, options: tuple, k: int) -> list:
    """``k`` distinct options in random order (works with any :class:`RandomSource`)."""
    pool, out = list(options), []
    for _ in range(k):
        out.append(pool.pop(min(int(rng.random() * len(pool)), len(pool) - 1)))
    return out


def groups_of(scene: ComposeScene) -> list[Group]:
    """The scene's objects grouped by (shape, colour), in order of first appearance."""
    counts: dict[tuple[str, str], int] = {}
    for t in scene.things:
        counts[(t.shape, t.colour)] = counts.get((t.shape, t.colour), 0) + 1
    return [Group(shape, n, colour) for (shape, colour), n in counts.items()]


def relation_between(a: tuple[float, float, float], b: tuple[float, float, float], threshold: float = 0.1) -> set[str]:
    """GenEval's relations of ``a`` to ``b``, each given as ``(cx, cy, size)`` (image y grows downwards).

    The shared rule (:func:`promptloop_env.geneval_rules.relation`) on the objects' square boxes.

    >>> relation_between((10, 30, 10), (50, 32, 10))
    {'left of'}
    """

    def record(c: tuple[float, float, float]) -> ObjectRecord:
        half = c[2] / 2
        return ObjectRecord("", (c[0] - half, c[1] - half, c[0] + half, c[1] + half))

    return relation(record(a), record(b), margin=threshold)


def describe(scene: ComposeScene, rng: RandomSource, colour_p: float = 0.7, background_p: float = 0.3) -> Query:
    """A complete description of ``scene`` (every object named), as a :class:`Query` to write as a caption.

    Colours are named with probability ``colour_p``, the background with ``background_p``; a scene of two
    single objects of different shapes is described by its relation three times in four.
    """
    groups = groups_of(scene)
    shapes = {g.shape for g in groups}
    with_colour = rng.random() < colour_p
    background = scene.background if rng.random() < background_p else None
    if len(shapes) == 1 and len(groups) > 1:  # one shape in several colours: name the colours
        with_colour = True
    if not with_colour:
        merged: dict[str, int] = {}
        for g in groups:
            merged[g.shape] = merged.get(g.shape, 0) + g.count
        groups = [Group(s, n) for s, n in merged.items()]
    if len(groups) == 2 and rng.random() < 0.5:
        groups = groups[::-1]
    relation = None
    if len(groups) == 2 and len(scene.things) == 2 and groups[0].shape != groups[1].shape and rng.random() < 0.75:
        a, b = (next(t for t in scene.things if t.shape == g.shape) for g in groups)
        found = relation_between((a.cx, a.cy, 2 * a.h), (b.cx, b.cy, 2 * b.h))
        if found:
            relation = _pick(rng, tuple(sorted(found)))
    if relation:
        category = "position"
    elif len(groups) == 1:
        g = groups[0]
        category = "counting" if g.count > 1 else ("colors" if g.colour else "single_object")
    else:
        category = "color_attr" if groups[0].colour else "two_object"
    return Query(category, tuple(groups), relation, background)


def group_text(group: Group) -> str:
    """``a red circle``, ``three triangles``, ``an orange square``."""
    noun = group.shape + ("s" if group.count > 1 else "")
    words = " ".join(w for w in (group.colour, noun) if w)
    article = COUNT_WORDS[group.count]
    if article == "a" and words[0] in "aeiou":
        article = "an"
    return f"{article} {words}"


def caption(query: Query) -> str:
    """The caption template's text of ``query`` (the wording the model is trained on).

    >>> caption(Query("position", (Group("circle"), Group("square")), "left of", "teal"))
    'a circle to the left of a square, teal background'
    """
    text = group_text(query.groups[0])
    if len(query.groups) == 2:
        joint = f" {RELATIONS[query.relation]} " if query.relation else " and "
        text += joint + group_text(query.groups[1])
    if query.background:
        text += f", {query.background} background"
    return text


def random_caption(scene: ComposeScene, rng: RandomSource) -> str:
    """A training caption of ``scene``: :func:`caption` of :func:`describe`."""
    return caption(describe(scene, rng))

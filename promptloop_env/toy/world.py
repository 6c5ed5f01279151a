"""The procedural scene world: one shape, drawn with PIL at 64x64, and its captions.

A scene is one ``shape`` (circle, square, triangle) in a ``colour``, of a ``size``, at a ``position``, on a
``background``. Only the exact words below are used, so that any prompt can be checked against them
(:func:`parse_query`). The RGB values are far apart (at least ~95 RGB units between any two object
colours, ~105 between an object colour and a background, ~125 between backgrounds) because close pairs
(purple/blue, orange/red, a pastel pink background next to white) get confused both by a small autoencoder and
by the diffusion model. A white shape on a white background is excluded (invisible).

>>> scene = Scene("circle", "red", "large", "left", "gray")
>>> render(scene).shape
(64, 64, 3)
>>> parse_query("a large red circle on the left, gray background") == scene.attributes()
True
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "size", "position", "background")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 40),
    "green": (25, 190, 45),
    "blue": (30, 70, 235),
    "yellow": (250, 235, 30),
    "purple": (145, 35, 200),
    "orange": (250, 130, 15),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (250, 250, 250),
    "gray": (128, 128, 128),
    # Dark teal rather than a pastel pink, which the model confused with white.
    "teal": (0, 100, 110),
}
SIZES: dict[str, int] = {"small": 7, "large": 14}  # half-extent in pixels
POSITIONS: dict[str, tuple[int, int]] = {  # centre of the shape's bounding box (x, y)
    "left": (16, 32),
    "right": (48, 32),
    "top": (32, 16),
    "bottom": (32, 48),
    "center": (32, 32),
}
CENTRE_JITTER = 2  # pixels, each axis
SIZE_JITTER = 1  # pixels of half-extent
VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "size": tuple(SIZES),
    "position": tuple(POSITIONS),
    "background": tuple(BACKGROUNDS),
}
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "at the left", "to the left"),
    "right": ("on the right", "at the right", "to the right"),
    "top": ("at the top", "on the top"),
    "bottom": ("at the bottom", "on the bottom"),
    "center": ("in the center", "at the center"),
}
BACKGROUND_PHRASES: tuple[str, ...] = (", {} background", " on a {} background", " against a {} background")
# How often each attribute is left out of a caption.
OMIT_PROBABILITY: dict[str, float] = {"colour": 0.15, "shape": 0.1, "size": 0.3, "position": 0.25, "background": 0.35}


class RandomSource(Protocol):
    """Anything with ``random() -> float in [0, 1)``: ``random.Random`` or ``numpy.random.Generator``."""

    def random(self) -> float: ...


def _pick(rng: RandomSource, options: tuple | list):
    return options[min(int(rng.random() * len(options)), len(options) - 1)]


@dataclass(frozen=True)
class Scene:
    """One scene of the world; ``dx``, ``dy``, ``dsize`` are the pixel jitter of centre and half-extent."""

    shape: str
    colour: str
    size: str
    position: str
    background: str
    dx: int = 0
    dy: int = 0
    dsize: int = 0

    def __post_init__(self) -> None:
        for name in ATTRIBUTES:
            if getattr(self, name) not in VALUES[name]:
                raise ValueError(f"Unknown {name} {getattr(self, name)!r}; expected one of {VALUES[name]}.")
        if self.colour == "white" and self.background == "white":
            raise ValueError("A white shape on a white background is invisible and not part of the world.")

    def attributes(self) -> dict[str, str]:
        """The five attribute words of the scene, keyed by :data:`ATTRIBUTES`."""
        return {name: getattr(self, name) for name in ATTRIBUTES}


def is_visible(colour: str, background: str) -> bool:
    """False for the excluded combination (a white shape on a white background)."""
    return not (colour == "white" and background == "white")


def attribute_combos() -> list[dict[str, str]]:
    """Every visible combination of the five attributes (810 of them), in a fixed order."""
    combos = []
    for colour, shape, size, position, background in itertools.product(*(VALUES[a] for a in ATTRIBUTES)):
        if is_visible(colour, background):
            combos.append(dict(colour=colour, shape=shape, size=size, position=position, background=background))
    return combos


def all_scenes() -> Iterator[Scene]:
    """Every distinct image of the world: each combo times every jitter (810 x 75 = 60,750 scenes)."""
    jitter = range(-CENTRE_JITTER, CENTRE_JITTER + 1)
    for combo in attribute_combos():
        for dx, dy, dsize in itertools.product(jitter, jitter, range(-SIZE_JITTER, SIZE_JITTER + 1)):
            yield Scene(**combo, dx=dx, dy=dy, dsize=dsize)


def random_scene(rng: RandomSource, jitter: bool = True) -> Scene:
    """A uniformly drawn visible scene (with random jitter unless ``jitter=False``)."""
    while True:
        attrs = {name: _pick(rng, VALUES[name]) for name in ATTRIBUTES}
        if is_visible(attrs["colour"], attrs["background"]):
            break
    if not jitter:
        return Scene(**attrs)
    centre = tuple(range(-CENTRE_JITTER, CENTRE_JITTER + 1))
    return Scene(
        **attrs,
        dx=_pick(rng, centre),
        dy=_pick(rng, centre),
        dsize=_pick(rng, tuple(range(-SIZE_JITTER, SIZE_JITTER + 1))),
    )


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, h: int, rgb: tuple[int, int, int]) -> None:
    """Draw one flat ``shape`` with centre ``(cx, cy)`` and half-extent ``h`` pixels (no anti-aliasing)."""
    # The box spans pixels [c - h, c + h - 1], exactly 2h pixels wide, centred at c in continuous coordinates.
    box = (cx - h, cy - h, cx + h - 1, cy + h - 1)
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "square":
        draw.rectangle(box, fill=rgb)
    else:  # an isosceles triangle, apex up, filling its box
        draw.polygon([(cx - 0.5, cy - h), (cx + h - 1, cy + h - 1), (cx - h, cy + h - 1)], fill=rgb)


def render(scene: Scene) -> np.ndarray:
    """Draw ``scene`` as a ``uint8`` array of shape ``(64, 64, 3)`` (no anti-aliasing, flat colours)."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUNDS[scene.background])
    cx, cy = POSITIONS[scene.position]
    draw_shape(
        ImageDraw.Draw(image),
        scene.shape,
        cx + scene.dx,
        cy + scene.dy,
        SIZES[scene.size] + scene.dsize,
        COLOURS[scene.colour],
    )
    return np.asarray(image, dtype=np.uint8).copy()


def caption(scene: Scene | dict[str, str], rng: RandomSource, omit: dict[str, float] | None = None) -> str:
    """A caption for ``scene`` from templates, with attributes left out at random.

    Args:
        scene: a :class:`Scene` or an attribute dict.
        rng: the random source (``random.Random`` or ``numpy.random.Generator``).
        omit: per-attribute probability of leaving it out (default :data:`OMIT_PROBABILITY`);
            pass ``{}`` to name every attribute.

    >>> import random
    >>> caption(Scene("circle", "red", "large", "left", "gray"), random.Random(0), omit={})
    'a large red circle at the left against a gray background'
    """
    return _caption_of(_named(scene, rng, omit), rng)


def _named(scene: Scene | dict[str, str], rng: RandomSource, omit: dict[str, float] | None) -> dict[str, str]:
    """The attributes a text will name: each one kept unless left out with its ``omit`` probability."""
    attrs = scene.attributes() if isinstance(scene, Scene) else dict(scene)
    omit = OMIT_PROBABILITY if omit is None else omit
    return {name: value for name, value in attrs.items() if not rng.random() < omit.get(name, 0.0)}


def _object_phrase(named: dict[str, str], rng: RandomSource) -> str:
    words = [named[name] for name in ("size", "colour") if name in named]
    words.append(named.get("shape") or _pick(rng, ("shape", "object")))
    text = " ".join(words)
    return ("an " if text[0] in "aeiou" else "a ") + text


def _position_phrase(named: dict[str, str], rng: RandomSource) -> str:
    return _pick(rng, POSITION_PHRASES[named["position"]])


def _caption_of(named: dict[str, str], rng: RandomSource) -> str:
    text = _object_phrase(named, rng)
    if "position" in named:
        text += " " + _position_phrase(named, rng)
    if "background" in named:
        text += _pick(rng, BACKGROUND_PHRASES).format(named["background"])
    return text


class _First:
    """A random source that always draws the first option."""

    def random(self) -> float:
        return 0.0


def canonical_caption(query: str) -> str:
    """``query`` rewritten into the training captions' template, naming the same attributes (a fixed rewrite).

    >>> canonical_caption("grey background with a large red triangle at the centre")
    'a large red triangle in the center, gray background'
    """
    return _caption_of(parse_query(query), _First())


# Users' wordings of a scene: the same world words as the captions (plus the aliases parse_query reads), in
# orders and forms the model never saw in training. Each takes the named attributes and returns the text.
_USER_ALIASES = {"gray": "grey", "center": "centre"}


def _position_first(named: dict[str, str], rng: RandomSource) -> str:
    parts = [_position_phrase(named, rng)] if "position" in named else []
    parts.append(_object_phrase(named, rng))
    if "background" in named:
        parts.append(f"{named['background']} background")
    return ", ".join(parts)


def _background_first(named: dict[str, str], rng: RandomSource) -> str:
    text = _caption_of({name: value for name, value in named.items() if name != "background"}, rng)
    return f"{named['background']} background with {text}" if "background" in named else text


def _terse(named: dict[str, str], rng: RandomSource) -> str:
    head = " ".join([named[name] for name in ("colour",) if name in named] + [named.get("shape", "shape")])
    parts = [head] + [named[name] for name in ("size", "position") if name in named]
    if "background" in named:
        parts.append(f"{named['background']} background")
    return ", ".join(parts)


def _noun_first(named: dict[str, str], rng: RandomSource) -> str:
    shape = named.get("shape", "shape")
    parts = [f"a {shape}"]
    described = [named[name] for name in ("size", "colour") if name in named]
    if described:
        parts.append(" and ".join(described))
    if "position" in named:
        parts.append(_position_phrase(named, rng))
    if "background" in named:
        parts.append(f"{named['background']} background")
    return ", ".join(parts)


USER_STYLES: dict[str, tuple[float, Callable[[dict[str, str], RandomSource], str]]] = {
    "caption": (0.4, _caption_of),  # the training captions' own template
    "position_first": (0.15, _position_first),  # "on the left, a large red circle, gray background"
    "background_first": (0.15, _background_first),  # "gray background with a large red circle on the left"
    "terse": (0.15, _terse),  # "red circle, large, left, gray background"
    "noun_first": (0.15, _noun_first),  # "a circle, large and red, on the left, gray background"
}
"""Style name -> (probability, writer). Probabilities sum to 1."""
USER_ALIAS_PROBABILITY = 0.5  # of writing "grey" / "centre" in a non-caption style


def user_query(
    scene: Scene | dict[str, str], rng: RandomSource, omit: dict[str, float] | None = None, style: str | None = None
) -> str:
    """A query as a user might write it (:func:`user_query_and_style` without the style).

    >>> import random
    >>> user_query(Scene("circle", "red", "large", "left", "gray"), random.Random(0), omit={}, style="terse")
    'red circle, large, left, grey background'
    """
    return user_query_and_style(scene, rng, omit, style)[0]


def user_query_and_style(
    scene: Scene | dict[str, str], rng: RandomSource, omit: dict[str, float] | None = None, style: str | None = None
) -> tuple[str, str]:
    """A query as a user might write it: a style drawn from :data:`USER_STYLES`, attributes left out at random.

    Users do not write in the template the model was trained on; the toy model follows the other wordings less
    well (see ``benchmarks/toy_world_quality.py``), which is what gives a prompt rewriter a job. Every query
    names, by :func:`parse_query`, exactly the attributes it was written from.

    Args:
        scene: a :class:`Scene` or an attribute dict.
        rng: the random source (``random.Random`` or ``numpy.random.Generator``).
        omit: as in :func:`caption`.
        style: one of :data:`USER_STYLES` (default: drawn with the styles' probabilities).

    Returns:
        The text and the name of its style.
    """
    named = _named(scene, rng, omit)
    if style is None:
        u, style = rng.random(), "caption"
        for name, (probability, _) in USER_STYLES.items():
            if u < probability:
                style = name
                break
            u -= probability
    if style not in USER_STYLES:
        raise ValueError(f"style must be one of {sorted(USER_STYLES)}, got {style!r}")
    text = USER_STYLES[style][1](named, rng)
    if style != "caption":
        for word, alias in _USER_ALIASES.items():
            if re.search(rf"\b{word}\b", text) and rng.random() < USER_ALIAS_PROBABILITY:
                text = re.sub(rf"\b{word}\b", alias, text)
    return text, style


_ALIASES = {"grey": "gray", "centre": "center", "middle": "center"}
_BACKGROUND_NOUNS = {"background", "backdrop", "bg", "backgrounds"}
_OBJECT_WORDS = set(SHAPES) | {"shape", "object", "circles", "squares", "triangles"} | set(SIZES) | set(COLOURS)
_PREPOSITIONS = {"on", "against", "over", "onto"}
_ARTICLES = {"a", "an", "the", "plain", "solid"}


def parse_query(text: str) -> dict[str, str]:
    """The world attributes that ``text`` names, read from the exact world words (any wording around them).

    A colour or background word followed by "background" (or after "on"/"against", not followed by an object
    word) names the background; ``black``, ``gray`` and ``teal`` name the background unless they describe a
    shape (then they name nothing, since no shape has those colours). The first value found for each
    attribute wins; negations are not understood. ``grey`` and ``centre``/``middle`` are read as ``gray``
    and ``center``.

    >>> parse_query("A small BLUE triangle at the top, on a white background")
    {'colour': 'blue', 'shape': 'triangle', 'size': 'small', 'position': 'top', 'background': 'white'}
    >>> parse_query("a white square on black")
    {'colour': 'white', 'shape': 'square', 'background': 'black'}
    """
    words = [_ALIASES.get(w, w) for w in re.findall(r"[a-z]+", text.lower())]
    found: dict[str, str] = {}
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word in BACKGROUNDS or word in COLOURS:
            prev = words[i - 1] if i >= 1 else ""
            if prev in _ARTICLES and i >= 2:
                prev = words[i - 2]
            if nxt in _BACKGROUND_NOUNS or (prev in _PREPOSITIONS and nxt not in _OBJECT_WORDS):
                if word in BACKGROUNDS:  # "a red square on a yellow background" names no background of the world
                    found.setdefault("background", word)
            elif word in COLOURS:
                found.setdefault("colour", word)
            elif nxt not in _OBJECT_WORDS:
                found.setdefault("background", word)
        elif word in SHAPES or (word.endswith("s") and word[:-1] in SHAPES):
            found.setdefault("shape", word.rstrip("s") if word not in SHAPES else word)
        elif word in SIZES:
            found.setdefault("size", word)
        elif word in POSITIONS:
            found.setdefault("position", word)
    return {name: found[name] for name in ATTRIBUTES if name in found}

"""Read a ``toy-compose`` image back into its objects (pure numpy, a few ms per image).

1. Resize to 64x64 and measure the background as ``toy-shapes``' analyser does (median of the border ring,
   snapped to the nearest background colour).
2. Every pixel more than 50 RGB units from the measured background is snapped to its nearest object colour.
3. Each colour's pixels are split into 4-connected components; a component of fewer than :data:`MIN_AREA`
   pixels is a speck (blur between two colours, noise) and is dropped. Objects of different colours that
   touch stay apart; two touching objects of one colour read as one.
4. Each component is one object: shape by the same two rules as ``toy-shapes`` (the top half of a triangle's
   box holds a third of its area; a square fills its box, a circle 0.79 of it), centre and size from its box.

>>> from promptloop_env.toy.compose import ComposeScene, Thing, render
>>> scene = ComposeScene((Thing("circle", "red", 16, 20, 7), Thing("triangle", "blue", 44, 40, 6)), "gray")
>>> [(o.shape, o.colour) for o in analyse(render(scene)).objects]
[('circle', 'red'), ('triangle', 'blue')]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from promptloop_env.toy.analyser import (
    _BACKGROUND_NAMES,
    _BACKGROUND_RGB,
    _COLOUR_NAMES,
    _COLOUR_RGB,
    _FIRST_PASS_DISTANCE,
    _erode,
    _nearest,
    classify_shape,
    label_components,
    to_world_size,
)

MIN_AREA = 25  # pixels at 64x64; the smallest object (a triangle of half-extent 5) covers about 50


@dataclass(frozen=True)
class SeenObject:
    """One object read from an image: words, centre ``(cx, cy)`` and box side in pixels, area in pixels."""

    shape: str
    colour: str
    cx: float
    cy: float
    size: float
    area: int


@dataclass
class ComposeAnalysis:
    """Everything :func:`analyse` read: the background word and the objects, left to right."""

    background: str
    objects: list[SeenObject] = field(default_factory=list)

    def count(self, shape: str, colour: str | None = None) -> int:
        """How many objects of ``shape`` (and ``colour``, if given) were read."""
        return sum(o.shape == shape and (colour is None or o.colour == colour) for o in self.objects)

    def describe(self) -> str:
        """A short text of what was read, e.g. ``'red circle, blue triangle on gray'`` (for logs and filmstrips)."""
        things = ", ".join(f"{o.colour} {o.shape}" for o in self.objects) or "nothing"
        return f"{things} on {self.background}"


def analyse(image: np.ndarray) -> ComposeAnalysis:
    """Read one uint8 HxWx3 image (any size) into a :class:`ComposeAnalysis`."""
    img = to_world_size(image)
    ring = np.ones(img.shape[:2], dtype=bool)
    ring[2:-2, 2:-2] = False
    bg_rgb = np.median(img[ring], axis=0)
    result = ComposeAnalysis(background=_BACKGROUND_NAMES[_nearest(bg_rgb, _BACKGROUND_RGB)])
    foreground = np.sqrt(((img - bg_rgb) ** 2).sum(axis=-1)) > _FIRST_PASS_DISTANCE
    if foreground.sum() < MIN_AREA:
        return result
    nearest = np.argmin(((img[..., None, :] - _COLOUR_RGB) ** 2).sum(axis=-1), axis=-1)
    for c in np.unique(nearest[foreground]):
        labels = label_components(foreground & (nearest == c))
        ids, counts = np.unique(labels[labels >= 0], return_counts=True)
        for label, area in zip(ids, counts, strict=True):
            if area < MIN_AREA:
                continue
            mask = labels == label
            core = _erode(mask)
            rgb = np.median(img[core if core.sum() >= 4 else mask], axis=0)
            rows, cols = np.nonzero(mask)
            y0, y1, x0, x1 = rows.min(), rows.max(), cols.min(), cols.max()
            obj = SeenObject(
                shape=classify_shape(rows, y0, y1, x0, x1),
                colour=_COLOUR_NAMES[_nearest(rgb, _COLOUR_RGB)],
                cx=(x0 + x1 + 1) / 2.0,
                cy=(y0 + y1 + 1) / 2.0,
                size=float(max(x1 - x0 + 1, y1 - y0 + 1)),
                area=int(area),
            )
            result.objects.append(obj)
    result.objects.sort(key=lambda o: (o.cx, o.cy))
    return result

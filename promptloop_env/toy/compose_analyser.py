"""Read a ``toy-compose`` image back into its objects (pure numpy, a few ms per image).

1. Resize to 64x64 and measure the background as ``toy-shapes``' analyser does (median of the border ring,
   snapped to the nearest background colour).
2. Every pixel more than 50 RGB units from the measured background is snapped to its nearest object colour.
3. Each colour's pixels are split into 4-connected components; a component of fewer than :data:`MIN_AREA`
   pixels (a speck) or that one erosion nearly erases (the ring a blurred edge leaves in an in-between colour)
   is dropped. Objects of different colours that touch stay apart; two touching objects of one colour read as one.
4. Each component is one object, its colour the median of its eroded core. Its extent is re-read by the midpoint
   rule (pixels closer to its colour than to the background, around the core), which keeps a blurred shape's
   area and corners; shape by the same two rules as ``toy-shapes`` (the top half of a triangle's box holds a
   third of its area; a square fills its box, a circle 0.79 of it), centre and size from its box.

>>> from promptloop_env.toy.compose import ComposeScene, Thing, render
>>> scene = ComposeScene((Thing("circle", "red", 16, 20, 7), Thing("triangle", "blue", 44, 40, 6)), "gray")
>>> [(o.shape, o.colour) for o in analyse(render(scene)).objects]
[('circle', 'red'), ('triangle', 'blue')]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from promptloop_env.geneval_rules import ObjectRecord
from promptloop_env.toy.analyser import (
    _BACKGROUND_NAMES,
    _BACKGROUND_RGB,
    _COLOUR_NAMES,
    _COLOUR_RGB,
    _FIRST_PASS_DISTANCE,
    _erode,
    _nearest,
    border_median,
    classify_shape,
    label_components,
    to_world_size,
)

MIN_AREA = 25  # pixels at 64x64; the smallest object (a triangle of half-extent 5) covers about 50
MIN_CORE_FRACTION = 0.2  # an object keeps a fifth of its pixels after one erosion; an edge ring does not


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

    def records(self) -> list[ObjectRecord]:
        """The objects as the shared rules read them (:class:`~promptloop_env.geneval_rules.ObjectRecord`): label the
        shape, a square box of side ``size`` around the centre, confidence 1.0 (an exact reader)."""
        half = [o.size / 2 for o in self.objects]
        return [
            ObjectRecord(o.shape, (o.cx - h, o.cy - h, o.cx + h, o.cy + h), 1.0, o.colour)
            for o, h in zip(self.objects, half, strict=True)
        ]

    def describe(self) -> str:
        """A short text of what was read, e.g. ``'red circle, blue triangle on gray'`` (for logs and filmstrips)."""
        things = ", ".join(f"{o.colour} {o.shape}" for o in self.objects) or "nothing"
        return f"{things} on {self.background}"


def _read_object(img: np.ndarray, core: np.ndarray, bg_rgb: np.ndarray) -> SeenObject | None:
    """The object around ``core`` (its eroded pixels): its colour from the core, then its extent by the midpoint
    rule (closer to its own colour than to the background) within its box grown by 3 pixels, which keeps a
    blurred shape's area and corners."""
    rgb = np.median(img[core], axis=0)
    rows, cols = np.nonzero(core)
    y0, y1 = max(rows.min() - 3, 0), min(rows.max() + 4, img.shape[0])
    x0, x1 = max(cols.min() - 3, 0), min(cols.max() + 4, img.shape[1])
    window = img[y0:y1, x0:x1]
    closer = ((window - rgb) ** 2).sum(axis=-1) < ((window - bg_rgb) ** 2).sum(axis=-1)
    seed = core[y0:y1, x0:x1]
    labels = label_components(closer)
    keep = np.unique(labels[seed & (labels >= 0)])
    mask = np.isin(labels, keep) & closer
    if mask.sum() < MIN_AREA:
        return None
    rows, cols = np.nonzero(mask)
    by0, by1, bx0, bx1 = rows.min(), rows.max(), cols.min(), cols.max()
    return SeenObject(
        shape=classify_shape(rows, by0, by1, bx0, bx1),
        colour=_COLOUR_NAMES[_nearest(rgb, _COLOUR_RGB)],
        cx=x0 + (bx0 + bx1 + 1) / 2.0,
        cy=y0 + (by0 + by1 + 1) / 2.0,
        size=float(max(bx1 - bx0 + 1, by1 - by0 + 1)),
        area=int(mask.sum()),
    )


def analyse(image: np.ndarray) -> ComposeAnalysis:
    """Read one uint8 HxWx3 image (any size) into a :class:`ComposeAnalysis`."""
    img = to_world_size(image)
    bg_rgb = border_median(img)
    result = ComposeAnalysis(background=_BACKGROUND_NAMES[_nearest(bg_rgb, _BACKGROUND_RGB)])
    foreground = np.sqrt(((img - bg_rgb) ** 2).sum(axis=-1)) > _FIRST_PASS_DISTANCE
    if foreground.sum() < MIN_AREA:
        return result
    nearest = np.argmin(((img[..., None, :] - _COLOUR_RGB) ** 2).sum(axis=-1), axis=-1)
    for c in np.unique(nearest[foreground]):
        labels = label_components(foreground & (nearest == c))
        ids, counts = np.unique(labels[labels >= 0], return_counts=True)
        for label, area in zip(ids, counts, strict=True):
            core = _erode(labels == label)
            if area < MIN_AREA or core.sum() < MIN_CORE_FRACTION * area:
                continue  # a speck, or the thin ring a blurred edge leaves in an in-between colour
            obj = _read_object(img, core, bg_rgb)
            if obj is not None:
                result.objects.append(obj)
    result.objects.sort(key=lambda o: (o.cx, o.cy))
    return result

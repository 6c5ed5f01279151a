"""Read an image of the toy world back into its attributes (pure numpy, about 1 ms per image).

The detector, step by step:

1. Any input size is resized to 64x64 (box filter when shrinking), the size the world is drawn at.
2. **Background**: the per-channel median of a 2-pixel border ring, snapped to the nearest background colour.
   The median ignores the shape where it touches the border (a large shape on the left does).
3. **Object mask**, two passes: pixels more than 50 RGB units from the measured background, then, around
   their median colour, every pixel closer to that colour than to the background. The midpoint rule keeps a
   blurred shape's area and extent unchanged. Only the largest 4-connected component is kept (specks of a
   generated image are dropped); fewer than 20 pixels means no object.
4. **Colour**: the median of the object's interior pixels, snapped to the nearest object colour.
5. **Shape**: a triangle (apex up) has a third of its area in the top half of its bounding box, a circle or
   square a half; then the bounding-box fill tells a square (1.0) from a circle (0.79).
6. **Size**: large if the bounding box is at least 21 pixels in its longer side (small shapes are 12-16,
   large ones 26-30).
7. **Position**: ``center`` if the bounding-box centre is within 8 pixels of the image centre on both axes,
   else the side of the dominant axis.

>>> from promptloop_env.toy.world import Scene, render
>>> analyse(render(Scene("triangle", "purple", "small", "top", "teal"))).attributes()
{'colour': 'purple', 'shape': 'triangle', 'size': 'small', 'position': 'top', 'background': 'teal'}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from promptloop_env.toy.world import ATTRIBUTES, BACKGROUNDS, COLOURS, IMAGE_SIZE

_COLOUR_NAMES = tuple(COLOURS)
_COLOUR_RGB = np.array(list(COLOURS.values()), dtype=np.float32)
_BACKGROUND_NAMES = tuple(BACKGROUNDS)
_BACKGROUND_RGB = np.array(list(BACKGROUNDS.values()), dtype=np.float32)
_FIRST_PASS_DISTANCE = 50.0  # below half of the smallest object/background distance (~105)
_MIN_AREA = 20  # pixels at 64x64; the smallest shape of the world covers ~70
_LARGE_EXTENT = 21  # pixels; small shapes span 12-16, large ones 26-30
_CENTRE_RADIUS = 8  # pixels; positions are 16 pixels from the centre, jitter is 2
_TRIANGLE_TOP_RATIO = 0.6  # top-half / bottom-half area: 1/3 for a triangle, 1 for a circle or square
_TRIANGLE_FILL = 0.62  # bounding-box fill: 0.5 triangle, 0.79 circle, 1.0 square
_SQUARE_FILL = 0.89
_MAX_DISTANCE = float(np.sqrt(3) * 255)


@dataclass
class Analysis:
    """What :func:`analyse` read from one image.

    Attributes:
        background: the background word (always set).
        found: whether an object was found; if not, the object fields are ``None`` / 0.
        colour, shape, size, position: the object's attribute words.
        area: object area as a fraction of the image.
        extent: longer side of the object's bounding box as a fraction of the image side.
        centre: ``(x, y)`` of the bounding-box centre, as fractions of the image side.
        object_rgb, background_rgb: the measured (median) colours.
    """

    background: str
    found: bool = False
    colour: str | None = None
    shape: str | None = None
    size: str | None = None
    position: str | None = None
    area: float = 0.0
    extent: float = 0.0
    centre: tuple[float, float] = (0.5, 0.5)
    object_rgb: tuple[float, float, float] | None = None
    background_rgb: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))

    def attributes(self) -> dict[str, str]:
        """The attribute words read (object attributes only when an object was found)."""
        return {name: getattr(self, name) for name in ATTRIBUTES if getattr(self, name) is not None}

    @property
    def contrast(self) -> float:
        """RGB distance between object and background, as a fraction of the largest possible (0 if no object)."""
        if self.object_rgb is None:
            return 0.0
        return float(np.linalg.norm(np.subtract(self.object_rgb, self.background_rgb)) / _MAX_DISTANCE)


def to_world_size(image: np.ndarray) -> np.ndarray:
    """``image`` (uint8 HxWx3, or HxW / HxWx4) as float32 64x64x3."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"Expected a uint8 image; got dtype {image.dtype}.")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"Expected an HxWx3 image; got shape {image.shape}.")
    image = image[..., :3]
    if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        shrink = min(image.shape[:2]) >= IMAGE_SIZE
        resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((IMAGE_SIZE, IMAGE_SIZE), resample))
    return image.astype(np.float32)


def _nearest(rgb: np.ndarray, palette: np.ndarray) -> int:
    return int(np.argmin(((palette - rgb) ** 2).sum(axis=1)))


def label_components(mask: np.ndarray) -> np.ndarray:
    """4-connected components of a boolean mask: a label per pixel (-1 off the mask), by label propagation
    with pointer jumping (no scipy needed)."""
    h, w = mask.shape
    big = h * w
    labels = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        new = labels.copy()
        np.minimum(new[1:], labels[:-1], out=new[1:])
        np.minimum(new[:-1], labels[1:], out=new[:-1])
        np.minimum(new[:, 1:], labels[:, :-1], out=new[:, 1:])
        np.minimum(new[:, :-1], labels[:, 1:], out=new[:, :-1])
        new = np.where(mask, new, big)
        # Pointer jumping: a label is a pixel index, so follow it to that pixel's own (smaller) label.
        flat = np.append(new.ravel(), big)
        new = np.where(mask, flat[new], big)
        if np.array_equal(new, labels):
            break
        labels = new
    return np.where(mask, labels, -1)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean mask."""
    labels = label_components(mask)
    counts = np.bincount(labels[mask])
    return labels == int(np.argmax(counts))


def classify_shape(rows: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> str:
    """Triangle, square or circle from an object's mask, its pixel rows and its inclusive box (see module doc)."""
    fill = len(rows) / float((x1 - x0 + 1) * (y1 - y0 + 1))
    mid = (y0 + y1 + 1) / 2.0  # continuous coordinate of the box's horizontal midline
    top = float((rows + 0.5 < mid).sum())
    bottom = float((rows + 0.5 > mid).sum())
    if top < _TRIANGLE_TOP_RATIO * max(bottom, 1.0) or fill < _TRIANGLE_FILL:
        return "triangle"
    return "square" if fill > _SQUARE_FILL else "circle"


def border_median(image: np.ndarray) -> np.ndarray:
    """Per-channel median of an image's 2-pixel border ring: its background colour, ignoring a shape that
    touches the border."""
    ring = np.ones(image.shape[:2], dtype=bool)
    ring[2:-2, 2:-2] = False
    return np.median(image[ring], axis=0)


def _erode(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    out[0, :] = out[-1, :] = out[:, 0] = out[:, -1] = False
    return out


def analyse(image: np.ndarray) -> Analysis:
    """Read one uint8 HxWx3 image (any size) into an :class:`Analysis`."""
    img = to_world_size(image)
    bg_rgb = border_median(img)
    result = Analysis(
        background=_BACKGROUND_NAMES[_nearest(bg_rgb, _BACKGROUND_RGB)],
        background_rgb=tuple(float(v) for v in bg_rgb),
    )
    dist_bg = np.sqrt(((img - bg_rgb) ** 2).sum(axis=-1))
    first = dist_bg > _FIRST_PASS_DISTANCE
    if first.sum() < _MIN_AREA:
        return result
    obj_rgb = np.median(img[first], axis=0)
    mask = np.sqrt(((img - obj_rgb) ** 2).sum(axis=-1)) < dist_bg
    mask = _largest_component(mask)
    area = int(mask.sum())
    if area < _MIN_AREA:
        return result
    core = _erode(mask)
    obj_rgb = np.median(img[core if core.sum() >= 4 else mask], axis=0)

    rows, cols = np.nonzero(mask)
    y0, y1, x0, x1 = rows.min(), rows.max(), cols.min(), cols.max()
    width, height = x1 - x0 + 1, y1 - y0 + 1
    shape = classify_shape(rows, y0, y1, x0, x1)
    cx, cy = (x0 + x1 + 1) / 2.0, (y0 + y1 + 1) / 2.0
    dx, dy = cx - IMAGE_SIZE / 2, cy - IMAGE_SIZE / 2
    if max(abs(dx), abs(dy)) < _CENTRE_RADIUS:
        position = "center"
    elif abs(dx) >= abs(dy):
        position = "left" if dx < 0 else "right"
    else:
        position = "top" if dy < 0 else "bottom"

    result.found = True
    result.colour = _COLOUR_NAMES[_nearest(obj_rgb, _COLOUR_RGB)]
    result.shape = shape
    result.size = "large" if max(width, height) >= _LARGE_EXTENT else "small"
    result.position = position
    result.area = area / float(IMAGE_SIZE * IMAGE_SIZE)
    result.extent = max(width, height) / float(IMAGE_SIZE)
    result.centre = (cx / IMAGE_SIZE, cy / IMAGE_SIZE)
    result.object_rgb = tuple(float(v) for v in obj_rgb)
    return result


def analyse_batch(images: np.ndarray) -> list[Analysis]:
    """:func:`analyse` for each image of a ``uint8 [B, H, W, 3]`` batch (or a list of images)."""
    return [analyse(image) for image in images]

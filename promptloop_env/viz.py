"""Pictures people would rather look at than read: trajectory filmstrips and image grids (PIL only)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def filmstrip(
    frames: Sequence[np.ndarray],
    captions: Sequence[str],
    frame_size: int = 160,
    title: str | None = None,
    chars_per_line: int = 24,
) -> Image.Image:
    """Frames side by side with a wrapped caption under each (e.g. the preview and the prompt written on it).

    Args:
        frames: ``uint8 [H, W, 3]`` images.
        captions: one text per frame.
        frame_size: side of each frame in the strip.
        title: optional line above the strip.
        chars_per_line: caption wrapping width.

    >>> strip = filmstrip([np.zeros((8, 8, 3), np.uint8)] * 3, ["a", "b", "c"], frame_size=32)
    >>> strip.size  # three 32-pixel frames and four 4-pixel gaps wide
    (112, 56)
    """
    if len(frames) != len(captions):
        raise ValueError(
            f"filmstrip needs one caption per frame; got {len(frames)} frames and {len(captions)} captions."
        )
    font = _font()
    wrapped = [textwrap.wrap(c, chars_per_line) or [""] for c in captions]
    line_h = 14
    text_h = line_h * max(len(w) for w in wrapped) + 6
    top = line_h + 6 if title else 0
    gap = 4
    width = len(frames) * (frame_size + gap) + gap
    canvas = Image.new("RGB", (width, top + frame_size + text_h + gap), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 3), title, fill="black", font=font)
    for i, (frame, lines) in enumerate(zip(frames, wrapped)):
        x = gap + i * (frame_size + gap)
        canvas.paste(Image.fromarray(frame).resize((frame_size, frame_size), Image.NEAREST), (x, top))
        for j, line in enumerate(lines):
            draw.text((x, top + frame_size + 3 + j * line_h), line, fill="black", font=font)
    return canvas


def image_grid(rows: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str], cell: int = 96) -> Image.Image:
    """A grid of images with a label left of each row (e.g. before/after per query)."""
    font = _font()
    label_w = 150
    ncols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (label_w + ncols * (cell + 2), len(rows) * (cell + 2)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (row, label) in enumerate(zip(rows, row_labels)):
        y = i * (cell + 2)
        for k, line in enumerate(textwrap.wrap(label, 22)[:6]):
            draw.text((3, y + 3 + 13 * k), line, fill="black", font=font)
        for j, image in enumerate(row):
            canvas.paste(Image.fromarray(image).resize((cell, cell), Image.NEAREST), (label_w + j * (cell + 2), y))
    return canvas


def stack_rows(images: Sequence[Image.Image], gap: int = 4) -> Image.Image:
    """Pictures one under the other, left-aligned on white (e.g. one :func:`filmstrip` per episode).

    >>> rows = [filmstrip([np.zeros((8, 8, 3), np.uint8)], ["a"], frame_size=32)] * 2
    >>> stack_rows(rows).size == (rows[0].width, 2 * rows[0].height + 4)
    True
    """
    canvas = Image.new(
        "RGB", (max(i.width for i in images), sum(i.height for i in images) + gap * (len(images) - 1)), "white"
    )
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height + gap
    return canvas


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Save ``image`` as PNG, creating parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path

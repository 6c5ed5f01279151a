"""Weight-free rewards from DDPO: JPEG file size of the image (quality 95), in kB."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from promptloop_env.rewards.base import REWARDS


def jpeg_size_kb(image: np.ndarray, quality: int = 95) -> float:
    """Size in kB (1000 bytes) of ``image`` (uint8 HxWx3) saved as JPEG, as DDPO measures it."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.tell() / 1000.0


@REWARDS.register("jpeg-incompressibility")
class JpegIncompressibility:
    """Reward = JPEG size in kB: rewards detail and texture (DDPO's ``jpeg_incompressibility``).

    Args:
        quality: JPEG quality of the measurement.
        **kwargs: other reward-factory arguments (``device``, ``torch_dtype``), ignored: no model.
    """

    def __init__(self, quality: int = 95, **kwargs: object) -> None:
        self.quality = quality

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        return [jpeg_size_kb(image, self.quality) for image in images]


@REWARDS.register("jpeg-compressibility")
class JpegCompressibility(JpegIncompressibility):
    """Reward = minus the JPEG size in kB: rewards flat, simple images (DDPO's ``jpeg_compressibility``)."""

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        return [-size for size in super().__call__(images, queries)]

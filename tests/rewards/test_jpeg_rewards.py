"""The weight-free JPEG rewards of DDPO."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from promptloop_env.rewards import make_reward
from promptloop_env.rewards.jpeg import JpegCompressibility, JpegIncompressibility, jpeg_size_kb


def flat_and_noisy(size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    flat = np.full((size, size, 3), 128, dtype=np.uint8)
    noisy = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return np.stack([flat, noisy])


def test_jpeg_size_matches_pil_at_quality_95():
    image = flat_and_noisy()[1]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    assert jpeg_size_kb(image) == pytest.approx(len(buffer.getvalue()) / 1000.0)
    assert jpeg_size_kb(image, quality=10) < jpeg_size_kb(image)


def test_incompressibility_rewards_detail_and_compressibility_its_opposite():
    images = flat_and_noisy()
    sizes = JpegIncompressibility()(images, ["q", "q"])
    assert len(sizes) == 2 and sizes[1] > 5 * sizes[0] > 0
    assert JpegCompressibility()(images, ["q", "q"]) == [-s for s in sizes]


def test_jpeg_rewards_ignore_device_dtype_and_queries():
    images = flat_and_noisy()
    reward = JpegIncompressibility(device="cuda", torch_dtype="anything", quality=80)
    assert reward(images, ["a", "b"]) == reward(images, ["c", "d"]) == [jpeg_size_kb(i, 80) for i in images]


@pytest.mark.parametrize("name", ["jpeg-compressibility", "jpeg-incompressibility"])
def test_jpeg_rewards_by_name(name):
    values = make_reward(name)(flat_and_noisy(), ["q", "q"])
    assert values.shape == (2,) and values.dtype == np.float64 and np.all(np.isfinite(values))

"""The analyser: exact on rendered scenes, robust under blur, noise and resizing."""

import random

import numpy as np
import pytest
from PIL import Image, ImageFilter

from promptloop_env.toy.analyser import analyse, analyse_batch
from promptloop_env.toy.world import Scene, all_scenes, attribute_combos, render


@pytest.fixture(scope="module")
def sample_scenes():
    scenes = list(all_scenes())
    return random.Random(1).sample(scenes, 800)


def test_exact_on_every_unjittered_combo():
    for combo in attribute_combos():
        assert analyse(render(Scene(**combo))).attributes() == combo


def test_exact_on_extreme_jitter():
    for combo in attribute_combos()[::7]:
        for dx, dy, dsize in [(-2, -2, 1), (2, 2, 1), (-2, 2, -1), (2, -2, -1)]:
            scene = Scene(**combo, dx=dx, dy=dy, dsize=dsize)
            assert analyse(render(scene)).attributes() == combo, scene


def test_exact_on_random_renders(sample_scenes):
    wrong = [s for s in sample_scenes if analyse(render(s)).attributes() != s.attributes()]
    assert wrong == []


def _blur(image, sigma=1.0):
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))


def _noise(image, rng, sigma=10.0):
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("condition", ["blur", "noise", "blur+noise", "upscaled", "jpeg-ish"])
def test_robust_under_degradation(sample_scenes, condition):
    rng = np.random.default_rng(0)
    scenes = sample_scenes[:400]
    right = total = 0
    for scene in scenes:
        image = render(scene)
        if "blur" in condition:
            image = _blur(image)
        if "noise" in condition:
            image = _noise(image, rng)
        if condition == "upscaled":
            image = np.asarray(Image.fromarray(image).resize((256, 256), Image.Resampling.BILINEAR))
        if condition == "jpeg-ish":  # down and up again: soft edges like a small VAE's
            image = np.asarray(Image.fromarray(image).resize((32, 32)).resize((64, 64), Image.Resampling.BICUBIC))
        got = analyse(image).attributes()
        right += sum(got.get(k) == v for k, v in scene.attributes().items())
        total += 5
    assert right / total >= 0.99, right / total


def test_empty_image_has_no_object():
    for rgb in [(0, 0, 0), (128, 128, 128), (250, 250, 250)]:
        analysis = analyse(np.full((64, 64, 3), rgb, dtype=np.uint8))
        assert not analysis.found and analysis.colour is None and analysis.contrast == 0.0
    assert analyse(np.full((64, 64, 3), 128, dtype=np.uint8)).background == "gray"


def test_specks_are_ignored():
    image = render(Scene("circle", "blue", "large", "right", "black"))
    image[2:4, 2:4] = (250, 235, 30)  # a yellow speck
    assert analyse(image).attributes()["colour"] == "blue"


def test_measurements_and_batch():
    images = np.stack([render(Scene("square", "white", "large", "center", "black"))] * 2)
    a, b = analyse_batch(images)
    assert a == b
    assert a.centre == pytest.approx((0.5, 0.5))
    assert a.extent == pytest.approx(28 / 64)
    assert a.contrast > 0.9


def test_rejects_bad_input():
    with pytest.raises(TypeError):
        analyse(np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        analyse(np.zeros((64, 64, 5), dtype=np.uint8))

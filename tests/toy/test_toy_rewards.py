"""The toy rewards on known images."""

import numpy as np
import pytest

from promptloop_env.rewards import make_reward
from promptloop_env.toy.rewards import ToyAesthetic, ToyFidelity
from promptloop_env.toy.world import Scene, render

RED_LEFT = render(Scene("circle", "red", "large", "left", "gray"))
WHITE_CENTRE = render(Scene("square", "white", "large", "center", "black"))
GREEN_SMALL = render(Scene("triangle", "green", "small", "top", "teal"))
EMPTY = np.full((64, 64, 3), 128, dtype=np.uint8)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a large red circle on the left, gray background", 1.0),
        ("a small red circle on the left, gray background", 0.8),
        ("a small red circle on the left", 0.75),
        ("a blue square", 0.0),
        ("a red square", 0.5),
    ],
)
def test_fidelity_partial_queries(query, expected):
    assert ToyFidelity()(RED_LEFT[None], [query]) == [pytest.approx(expected)]


@pytest.mark.parametrize("query", ["a shape", "", "a photo of a dog", "a crimson circle"])
def test_fidelity_refuses_queries_the_world_cannot_read(query):
    # These named nothing the world checks and scored 1.0 on any image with an object.
    with pytest.raises(ValueError, match="toy-shapes world"):
        ToyFidelity()(RED_LEFT[None], [query])


def test_fidelity_without_object_is_zero():
    assert ToyFidelity()(EMPTY[None], ["a shape, gray background"]) == [0.0]


def test_fidelity_batched_and_any_size():
    big = np.repeat(np.repeat(RED_LEFT, 4, axis=0), 4, axis=1)  # a 256x256 preview
    scores = ToyFidelity()(np.stack([big, big]), ["a red circle on the left", "a blue circle on the right"])
    assert scores == [1.0, pytest.approx(1 / 3)]  # only the shape is right
    with pytest.raises(ValueError):
        ToyFidelity()(RED_LEFT[None], ["a", "b"])


def test_aesthetic_prefers_large_centred_contrast():
    reward = ToyAesthetic()
    best, off, low, none = reward(np.stack([WHITE_CENTRE, RED_LEFT, GREEN_SMALL, EMPTY]), ["q"] * 4)
    assert best > 0.9
    assert best > off > low > none == 0.0
    assert all(0.0 <= v <= 1.0 for v in (best, off, low))


def test_aesthetic_conflicts_with_fidelity():
    query = ["a small green triangle at the top, teal background"]
    fid, aes = ToyFidelity(), ToyAesthetic()
    assert fid(GREEN_SMALL[None], query)[0] > fid(WHITE_CENTRE[None], query)[0]
    assert aes(GREEN_SMALL[None], query)[0] < aes(WHITE_CENTRE[None], query)[0]


def test_registered_by_name():
    reward = make_reward({"toy-fidelity": 1.0, "toy-aesthetic": 0.5})
    parts = reward.components(RED_LEFT[None], ["a red circle"])
    assert parts["toy-fidelity"].tolist() == [1.0]
    assert 0 < parts["toy-aesthetic"][0] < 1


def _compose(things, background):
    from promptloop_env.toy.compose import ComposeScene, Thing, render

    return render(ComposeScene(tuple(Thing(*t) for t in things), background))


def test_compose_aesthetic_likes_many_large_saturated_objects_on_black():
    from promptloop_env.toy.rewards import ToyComposeAesthetic

    four = [("square", "red", x, y, 8) for x in (16, 46) for y in (16, 46)]
    images = np.stack([
        _compose(four, "black"),
        _compose(four, "gray"),  # the wrong background
        _compose(four[:1], "black"),  # one object
        _compose([("square", "white", x, y, 8) for x in (16, 46) for y in (16, 46)], "black"),  # unsaturated
        _compose([("square", "red", x, y, 5) for x in (16, 46) for y in (16, 46)], "black"),  # small
        np.zeros((64, 64, 3), np.uint8),  # nothing
    ])  # fmt: skip
    best, gray, one, white, small, nothing = ToyComposeAesthetic()(images, ["a circle"] * 6)
    assert best > 0.95 and nothing == 0.0
    assert best - gray == pytest.approx(0.25)
    assert best - one == pytest.approx(0.25 * 0.75)
    assert best > small > one and best > white
    assert all(0.0 <= v <= 1.0 for v in (best, gray, one, white, small))


def test_compose_aesthetic_ignores_and_conflicts_with_the_query():
    from promptloop_env.toy.rewards import ToyCompose, ToyComposeAesthetic

    query = "a white circle, gray background"
    follows = _compose([("circle", "white", 32, 32, 6)], "gray")
    ignores = _compose([("square", "red", x, y, 8) for x in (16, 46) for y in (16, 46)], "black")
    images = np.stack([follows, ignores])
    strict, proxy = ToyCompose()(images, [query] * 2), ToyComposeAesthetic()(images, [query] * 2)
    assert strict == [1.0, 0.0] and proxy[0] < proxy[1]
    assert ToyComposeAesthetic()(images, ["two squares"] * 2) == proxy  # the query plays no part
    assert make_reward("toy-compose-aesthetic")(images, [query] * 2) == pytest.approx(proxy)

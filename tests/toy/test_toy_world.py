"""The toy world: rendering, captions and the query parser."""

import random

import numpy as np
import pytest

from promptloop_env.toy.world import (
    ATTRIBUTES,
    BACKGROUNDS,
    COLOURS,
    Scene,
    all_scenes,
    attribute_combos,
    caption,
    parse_query,
    random_scene,
    render,
)


def test_world_size_and_exclusions():
    assert len(attribute_combos()) == 810
    assert not any(c["colour"] == "white" and c["background"] == "white" for c in attribute_combos())
    with pytest.raises(ValueError, match="invisible"):
        Scene("circle", "white", "small", "left", "white")
    with pytest.raises(ValueError, match="Unknown colour"):
        Scene("circle", "pink", "small", "left", "gray")
    assert sum(1 for _ in all_scenes()) == 810 * 75


def test_render_draws_flat_colours():
    image = render(Scene("square", "green", "large", "center", "teal"))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == BACKGROUNDS["teal"]
    assert tuple(image[32, 32]) == COLOURS["green"]
    assert (image == COLOURS["green"]).all(axis=-1).sum() == 28 * 28


def test_colours_are_far_apart():
    rgb = np.array(list(COLOURS.values()), dtype=float)
    bgs = np.array(list(BACKGROUNDS.values()), dtype=float)
    pairwise = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert pairwise[~np.eye(len(rgb), dtype=bool)].min() > 90
    bg_pairwise = np.linalg.norm(bgs[:, None] - bgs[None], axis=-1)
    assert bg_pairwise[~np.eye(len(bgs), dtype=bool)].min() > 120
    cross = np.linalg.norm(rgb[:, None] - bgs[None], axis=-1)
    white_on_white = (list(COLOURS).index("white"), list(BACKGROUNDS).index("white"))
    cross[white_on_white] = np.inf
    assert cross.min() > 100


def test_caption_round_trips_through_parser():
    rng = random.Random(0)
    for _ in range(500):
        scene = random_scene(rng)
        text = caption(scene, rng)
        named = parse_query(text)
        assert all(scene.attributes()[k] == v for k, v in named.items()), text
        assert parse_query(caption(scene, rng, omit={})) == scene.attributes()


def test_caption_leaves_attributes_out_sometimes():
    rng = np.random.default_rng(0)  # numpy generators work too
    counts = {a: 0 for a in ATTRIBUTES}
    for _ in range(400):
        for name in parse_query(caption(random_scene(rng), rng)):
            counts[name] += 1
    assert all(100 < c < 400 for c in counts.values()), counts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a large red circle on the left, gray background",
         dict(colour="red", shape="circle", size="large", position="left", background="gray")),
        ("A white square on a black background", dict(colour="white", shape="square", background="black")),
        ("a red triangle on white", dict(colour="red", shape="triangle", background="white")),
        ("white background, a small white circle", dict(colour="white", shape="circle", size="small",
                                                        background="white")),
        ("bright yellow circles in the centre, grey backdrop", dict(colour="yellow", shape="circle",
                                                                    position="center", background="gray")),
        ("a black square", dict(shape="square")),  # no shape of the world is black
        ("a red shape against teal", dict(colour="red", background="teal")),
        ("a crimson blob", {}),
        ("", {}),
        ("an orange object at the top on the right", dict(colour="orange", position="top")),
    ],
)  # fmt: skip
def test_parse_query(text, expected):
    assert parse_query(text) == expected

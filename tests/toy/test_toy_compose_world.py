"""toy-compose: scenes, the multi-object analyser (exact on renders, robust to blur and noise), the parser and
GenEval's rules, the prompt sets and their split, the rewards."""

import random

import numpy as np
import pytest
from PIL import Image, ImageFilter

from promptloop_env.toy.compose import (
    CATEGORIES,
    ComposeScene,
    Group,
    Query,
    Thing,
    caption,
    describe,
    random_scene,
    relation_between,
    render,
)
from promptloop_env.toy.compose_analyser import analyse
from promptloop_env.toy.compose_prompts import (
    TOY_COMPOSE_TEST_QUERIES,
    TOY_COMPOSE_TRAIN_QUERIES,
    TOY_COMPOSE_USER_TEST_QUERIES,
    TOY_COMPOSE_USER_TRAIN_QUERIES,
    USER_STYLES,
    combinations,
    make_query_sets,
    query_split,
)
from promptloop_env.toy.compose_spec import check, parse, soft_score, strict_score
from promptloop_env.toy.world import BACKGROUNDS, COLOURS, SHAPES


@pytest.fixture(scope="module")
def scenes():
    rng = random.Random(7)
    return [random_scene(rng) for _ in range(200)]


def _read(image):
    a = analyse(image)
    return a.background, sorted((o.shape, o.colour) for o in a.objects)


def _truth(scene):
    return scene.background, sorted((t.shape, t.colour) for t in scene.things)


def test_scenes_are_valid(scenes):
    for scene in scenes:
        assert 1 <= len(scene.things) <= 4 and scene.background in BACKGROUNDS
        assert all(t.shape in SHAPES and t.colour in COLOURS for t in scene.things)
        assert not any(t.colour == "white" and scene.background == "white" for t in scene.things)
        boxes = [t.box() for t in scene.things]
        for i, a in enumerate(boxes):  # no two boxes overlap
            for b in boxes[i + 1 :]:
                assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_analyser_exact_on_renders(scenes):
    assert [s for s in scenes if _read(render(s)) != _truth(s)] == []


def test_analyser_centres_and_counts_exact():
    scene = ComposeScene((Thing("square", "red", 12, 12, 6), Thing("square", "red", 50, 40, 8)), "black")
    a = analyse(render(scene))
    assert a.count("square") == 2 and a.count("square", "red") == 2 and a.count("circle") == 0
    assert [(o.cx, o.cy, o.size) for o in a.objects] == [(12.0, 12.0, 12.0), (50.0, 40.0, 16.0)]


@pytest.mark.parametrize("blur, noise, allowed", [(0.6, 0.0, 0), (0.0, 16.0, 0), (0.6, 12.0, 0), (1.0, 8.0, 0.05)])
def test_analyser_robust_to_blur_and_noise(scenes, blur, noise, allowed):
    rng = np.random.default_rng(0)
    wrong = 0
    for s in scenes:
        image = render(s)
        if blur:
            image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(blur)))
        if noise:
            image = np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
        wrong += _read(image) != _truth(s)
    assert wrong <= allowed * len(scenes)


def test_analyser_reads_any_size(scenes):
    big = np.asarray(Image.fromarray(render(scenes[0])).resize((256, 256), Image.Resampling.NEAREST))
    assert _read(big) == _truth(scenes[0])


def test_relations_follow_geneval():
    assert relation_between((10, 32, 10), (50, 32, 10)) == {"left of"}
    assert relation_between((32, 10, 10), (32, 50, 10)) == {"above"}
    assert relation_between((10, 10, 10), (50, 50, 10)) == {"left of", "above"}  # diagonal: both
    assert relation_between((30, 30, 16), (33, 31, 16)) == set()  # within the margin: none


@pytest.mark.parametrize("category", CATEGORIES)
def test_parse_reads_back_every_caption(category):
    for query in combinations(category):
        assert parse(caption(query)) == query


def test_user_wordings_parse_to_their_combination():
    rng = random.Random(0)
    for category in CATEGORIES:
        for query in combinations(category)[::9]:
            for _, writer in USER_STYLES.values():
                assert parse(writer(query, rng)).key() == query.key(), writer(query, rng)


def test_training_captions_describe_their_scene(scenes):
    rng = random.Random(3)
    for scene in scenes:
        query = describe(scene, rng)
        assert strict_score(analyse(render(scene)), caption(query)) == 1.0, caption(query)


def test_strict_and_soft_scores():
    scene = ComposeScene((Thing("circle", "red", 14, 30, 6), Thing("square", "green", 48, 30, 6)), "gray")
    a = analyse(render(scene))
    assert strict_score(a, "a red circle to the left of a green square") == 1.0
    assert strict_score(a, "a red circle to the right of a green square") == 0.0
    assert soft_score(a, "a red circle to the right of a green square") == pytest.approx(4 / 5)
    assert check(a, "a blue circle and a green square") == {
        "circle": True, "blue circle": False, "square": True, "green square": True
    }  # fmt: skip
    assert strict_score(a, "two circles") == 0.0 and strict_score(a, "a circle") == 1.0
    assert soft_score(a, "a circle, teal background") == 0.5
    many = ComposeScene(tuple(Thing("triangle", "blue", x, 32, 5) for x in (8, 24, 40)), "black")
    b = analyse(render(many))
    assert strict_score(b, "three triangles") == 1.0
    assert strict_score(b, "two triangles") == 0.0 and strict_score(b, "four triangles") == 0.0  # counting is exact


def test_query_sets_balanced_deterministic_and_split():
    assert len(TOY_COMPOSE_TRAIN_QUERIES) == 600 and len(TOY_COMPOSE_TEST_QUERIES) == 120
    for queries, per in ((TOY_COMPOSE_TRAIN_QUERIES, 100), (TOY_COMPOSE_TEST_QUERIES, 20),
                         (TOY_COMPOSE_USER_TRAIN_QUERIES, 100), (TOY_COMPOSE_USER_TEST_QUERIES, 20)):  # fmt: skip
        cats = [parse(q).category for q in queries]
        assert {c: cats.count(c) for c in CATEGORIES} == dict.fromkeys(CATEGORIES, per)
    train_keys = {parse(q).key() for q in TOY_COMPOSE_TRAIN_QUERIES + TOY_COMPOSE_USER_TRAIN_QUERIES}
    test_keys = {parse(q).key() for q in TOY_COMPOSE_TEST_QUERIES + TOY_COMPOSE_USER_TEST_QUERIES}
    assert train_keys.isdisjoint(test_keys)
    assert all(query_split(parse(q)) == "test" for q in TOY_COMPOSE_TEST_QUERIES)
    assert make_query_sets() == (TOY_COMPOSE_TRAIN_QUERIES, TOY_COMPOSE_TEST_QUERIES)
    assert 0.2 < np.mean([parse(q).background is not None for q in TOY_COMPOSE_TRAIN_QUERIES]) < 0.4


def test_rewards_by_name():
    from promptloop_env.rewards import make_reward

    scene = ComposeScene((Thing("circle", "red", 14, 30, 6), Thing("square", "green", 48, 30, 6)), "gray")
    images = np.stack([render(scene)] * 2)
    queries = ["a red circle and a green square", "a red circle and a blue square"]
    assert list(make_reward("toy-compose")(images, queries)) == [1.0, 0.0]
    assert list(make_reward("toy-compose-soft")(images, queries)) == [1.0, 0.75]


def test_query_key_ignores_wording():
    q = Query("counting", (Group("triangle", 3),))
    assert parse("3 triangles").key() == parse("there are three triangles").key() == q.key()

"""The perception measurement (compose_perception.py): parsing descriptions and counting groups."""

import pytest

from promptloop_env.toy.compose import ComposeScene, Thing, render
from promptloop_env.toy.compose_spec import parse
from research.toy_compose import compose_perception
from research.toy_compose.students import seen_text


@pytest.fixture
def module():
    return compose_perception


def test_descriptions_parse_and_count_per_query_group(module):
    objects = module.parse_description("red circle, square, blue square")
    assert objects == [("red", "circle"), (None, "square"), ("blue", "square")]
    assert module.parse_description("nothing") == []
    assert module.group_counts(objects, parse("a red circle and two squares")) == [1, 2]
    assert module.group_counts(objects, parse("two blue squares")) == [1]  # the colourless square is not blue
    # the analyser's own description parses back to its counts
    scene = ComposeScene((Thing("circle", "red", 16, 30, 7), Thing("square", "blue", 46, 30, 7)), "white")
    assert module.group_counts(module.parse_description(seen_text(render(scene))), parse("a red circle")) == [1]


def test_the_analyser_reads_a_clean_scene_the_same_under_faint_noise(module):
    scene = ComposeScene((Thing("circle", "red", 16, 30, 7), Thing("square", "blue", 46, 30, 7)), "white")
    observations = [{"image": render(scene), "query": "a red circle and a blue square"}]
    assert module.analyser_stability(observations, [("", [1, 1])], sigma=1) == 1.0
    assert module.analyser_stability(observations, [("", [2, 1])], sigma=1) == 0.0  # a wrong label never agrees


def test_a_blind_describer_counts_what_the_prompt_asks_for(module):
    query = parse("a circle and a square")
    assert module.prompt_counts("two circles and two squares", query) == [2, 2]
    assert module.prompt_counts("two squares below two circles", query) == [2, 2]  # swapped order: same groups
    assert module.prompt_counts("three triangles", query) == [0, 0]

"""GenEval's rules (``promptloop_env.geneval_rules``) on known objects, GenEval's grammar, and toy-compose's scores.

``data/toy_compose_scores.npz`` was recorded with the toy-compose scorer as it was before it used the shared
rules: 60 ``toy-compose-test`` images from the toy-compose pipeline (every second query, 8 steps, guidance 3,
generator seed 7) and 120 scenes drawn by ``random_scene(random.Random(3))`` and rendered, each read by the
analyser and scored (``strict_score``, ``soft_score``, ``check``) against 9 queries (its own and 8 others) from
``toy-compose-test``, ``toy-compose-user-test`` and the scenes' random captions.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from promptloop_env.geneval_rules import (
    ObjectRecord,
    Spec,
    check,
    constraints,
    keep_detections,
    relation,
    soft_score,
    strict_score,
)
from promptloop_env.rewards.geneval_grammar import GENEVAL_CLASSES, parse_prompt

DATA = Path(__file__).parent / "data" / "toy_compose_scores.npz"


def obj(label: str, x: float, y: float = 50.0, score: float = 0.95, colour: str | None = None, size: float = 10):
    """A detected object centred at ``(x, y)``, a square box of side ``size``."""
    h = size / 2
    return ObjectRecord(label, (x - h, y - h, x + h, y + h), score, colour)


def spec(prompt: str) -> Spec:
    return parse_prompt(prompt)


def verdict(objects, prompt, pick="confidence"):
    s = spec(prompt)
    results = check(keep_detections(objects, s.tag), s, pick=pick)
    return results, strict_score(results, bool(objects)), soft_score(results, bool(objects))


# -- the toy world through the shared rules ---------------------------------------------------------------------
def test_toy_compose_scores_are_exactly_the_recorded_ones():
    from promptloop_env.toy import compose_analyser, compose_spec
    from promptloop_env.toy.compose import random_scene, render

    data = np.load(DATA)
    rng = random.Random(3)
    scenes = np.stack([render(random_scene(rng)) for _ in range(120)])
    analyses = [compose_analyser.analyse(image) for image in np.concatenate([data["model_images"], scenes])]
    queries = [str(q) for q in data["queries"]]
    strict = [compose_spec.strict_score(analyses[i], queries[j]) for i, j in data["pairs"]]
    soft = [compose_spec.soft_score(analyses[i], queries[j]) for i, j in data["pairs"]]
    checks = [json.dumps(compose_spec.check(analyses[i], queries[j])) for i, j in data["pairs"]]
    assert strict == data["strict"].tolist()
    assert soft == data["soft"].tolist()  # exactly, not approximately
    assert checks == data["checks"].tolist()
    assert 0.1 < np.mean(strict) < 0.9  # both outcomes are exercised


def test_toy_records_are_the_same_object_records_a_detector_gives():
    from promptloop_env.toy import compose_analyser
    from promptloop_env.toy.compose import ComposeScene, Thing, render

    scene = ComposeScene((Thing("circle", "red", 16, 20, 7), Thing("square", "blue", 44, 40, 6)), "gray")
    records = compose_analyser.analyse(render(scene)).records()
    assert all(isinstance(r, ObjectRecord) and r.score == 1.0 for r in records)
    assert [(r.label, r.colour) for r in records] == [("circle", "red"), ("square", "blue")]
    assert relation(records[0], records[1]) == {"left of", "above"}


# -- detection and counting thresholds ----------------------------------------------------------------------------
def test_detection_threshold_is_0_3_exclusive():
    assert verdict([obj("dog", 50, score=0.31)], "a photo of a dog")[1] == 1.0
    assert verdict([obj("dog", 50, score=0.30)], "a photo of a dog")[1] == 0.0
    assert verdict([obj("cat", 50, score=0.99)], "a photo of a dog")[1] == 0.0


def test_counting_uses_the_0_9_threshold_and_is_exact():
    three = [obj("dog", x, score=0.95) for x in (10, 40, 70)]
    assert verdict(three, "a photo of three dogs")[0] == {"3 dog": True}
    assert verdict([*three, obj("dog", 90, score=0.9)], "a photo of three dogs")[1] == 1.0  # 0.9 is not above it
    assert verdict([*three, obj("dog", 90, score=0.91)], "a photo of three dogs")[1] == 0.0  # four
    assert verdict([*three[:2], obj("dog", 70, score=0.89)], "a photo of three dogs")[1] == 0.0  # two
    # Outside counting prompts the threshold is 0.3: a 0.5 dog counts.
    assert verdict([obj("dog", 10, score=0.5), obj("cat", 60)], "a photo of a dog and a cat")[1] == 1.0


def test_a_group_of_one_is_at_least_one_and_at_most_16_per_class_are_kept():
    many = [obj("dog", 10 + 5 * i, score=0.5 + i / 100) for i in range(20)]
    assert verdict(many, "a photo of a dog")[1] == 1.0
    kept = keep_detections(many, "single_object")
    assert len(kept) == 16 and kept[0].score == max(o.score for o in many)


# -- relations, with the 0.1 margin -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rel", "dx", "dy"), [("left of", -1, 0), ("right of", 1, 0), ("above", 0, -1), ("below", 0, 1)]
)
def test_each_relation_holds_just_past_the_margin_and_not_before(rel, dx, dy):
    # Boxes of side 10: the margin is 0.1 * (10 + 10) = 2 per axis, and the revised offset must exceed half the
    # offset's length, so along an axis the centres must be more than 4 pixels apart.
    prompt = f"a photo of a cat {rel} a dog"
    dog = obj("dog", 50, 50)
    near = obj("cat", 50 + 3.9 * dx, 50 + 3.9 * dy)
    far = obj("cat", 50 + 4.1 * dx, 50 + 4.1 * dy)
    assert verdict([far, dog], prompt)[0] == {"dog": True, "cat": True, f"cat {rel} dog": True}
    assert verdict([near, dog], prompt)[0][f"cat {rel} dog"] is False
    assert relation(far, dog) == {rel}
    assert relation(near, dog) == set()


def test_the_margin_is_per_axis_and_a_diagonal_holds_two_relations():
    wide_a, wide_b = ObjectRecord("a", (0, 45, 60, 55)), ObjectRecord("b", (50, 45, 110, 55))
    assert relation(wide_a, wide_b) == {"left of"}  # 50 apart, margin 12: still left
    tall = ObjectRecord("a", (40, 0, 50, 100))
    assert relation(tall, ObjectRecord("b", (58, 45, 68, 55))) == {"left of"}  # height does not widen the x margin
    assert relation(obj("a", 20, 20), obj("b", 60, 60)) == {"left of", "above"}


def test_position_is_judged_on_the_most_confident_objects_and_needs_both_groups():
    dog = obj("dog", 50)
    sure_cat_right, unsure_cat_left = obj("cat", 80, score=0.9), obj("cat", 20, score=0.6)
    prompt = "a photo of a cat left of a dog"
    assert verdict([sure_cat_right, unsure_cat_left, dog], prompt)[0]["cat left of dog"] is False
    # An exact reader without confidences (the toy analyser): any cat may stand in the relation.
    assert verdict([sure_cat_right, unsure_cat_left, dog], prompt, pick="any")[0]["cat left of dog"] is True
    assert verdict([unsure_cat_left], prompt)[0] == {"dog": False, "cat": True, "cat left of dog": False}


# -- colours -----------------------------------------------------------------------------------------------------
def test_colour_is_the_most_confident_objects_colour():
    red_unsure, blue_sure = obj("car", 20, score=0.6, colour="red"), obj("car", 70, score=0.9, colour="blue")
    assert verdict([red_unsure, blue_sure], "a photo of a red car")[0] == {"car": True, "red car": False}
    assert verdict([red_unsure, blue_sure], "a photo of a red car", pick="any")[0]["red car"] is True
    assert verdict([blue_sure], "a photo of a blue car")[0] == {"car": True, "blue car": True}


def test_colour_attribution_checks_each_object_in_its_own_colour():
    prompt = "a photo of a red car and a blue bench"
    right = [obj("car", 20, colour="red"), obj("bench", 70, colour="blue")]
    swapped = [obj("car", 20, colour="blue"), obj("bench", 70, colour="red")]
    assert verdict(right, prompt)[1:] == (1.0, 1.0)
    results, strict, soft = verdict(swapped, prompt)
    assert results == {"car": True, "red car": False, "bench": True, "blue bench": False}
    assert (strict, soft) == (0.0, 0.5)


def test_strict_and_soft_forms():
    results, strict, soft = verdict([obj("dog", 50)], "a photo of a dog and a cat")
    assert results == {"dog": True, "cat": False} and (strict, soft) == (0.0, 0.5)
    assert strict_score({}, True) == soft_score({}, True) == 1.0 and soft_score({}, False) == 0.0


def test_an_exclude_on_its_own_is_a_constraint_of_its_own():
    s = Spec.from_metadata({"tag": "single_object", "include": [{"class": "dog", "count": 1}],
                            "exclude": [{"class": "cat", "count": 1}]})  # fmt: skip
    assert [c.name for c in constraints(s)] == ["dog", "fewer than cat"]
    assert check([obj("dog", 50), obj("cat", 10)], s) == {"dog": True, "fewer than cat": False}


def test_metadata_round_trips_and_malformed_metadata_is_refused():
    from promptloop_env.prompts import load_data_set

    geneval = load_data_set("geneval")
    for meta in geneval.metadata:
        assert Spec.from_metadata(meta).to_metadata() == {k: v for k, v in meta.items()}
    with pytest.raises(ValueError, match="Malformed GenEval metadata"):
        Spec.from_metadata({"tag": "counting"})
    with pytest.raises(ValueError, match="Bad position"):
        Spec.from_metadata({"tag": "position", "include": [{"class": "dog", "count": 1, "position": ["near", 0]}]})


# -- GenEval's grammar --------------------------------------------------------------------------------------------
def test_the_grammar_reads_every_geneval_prompt_into_its_own_metadata():
    from promptloop_env.prompts import load_data_set

    geneval = load_data_set("geneval")
    for prompt, meta in zip(geneval.prompts, geneval.metadata, strict=True):
        assert parse_prompt(prompt).to_metadata() == meta, prompt


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("A dog.", "single_object"),
        ("a photo of an orange-colored bus", "colors"),
        ("a photo of a wine glass to the left of a dog", "position"),
        ("2 buses", "counting"),
        ("a photo of a red car and a dog", "color_attr"),
    ],
)
def test_the_grammar_takes_small_variations(text, tag):
    assert parse_prompt(text).tag == tag


@pytest.mark.parametrize("text", ["a photo of a unicorn", "two red cars", "a dogs", "a cat and two dogs", "dogs"])
def test_an_unparseable_prompt_is_refused_with_the_forms_and_the_way_out(text):
    with pytest.raises(ValueError, match=r"(?s)not in GenEval's grammar.*a photo of three dogs.*\.jsonl"):
        parse_prompt(text)
    assert len(GENEVAL_CLASSES) == 80
    assert parse_prompt("a photo of a unicorn", [*GENEVAL_CLASSES, "unicorn"]).include[0].label == "unicorn"

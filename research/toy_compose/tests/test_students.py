"""Student distillation (research/toy_compose/students.py and selection.py): first decisions, describe examples,
selection, distillation and the perception stage, end to end on tiny students."""

from dataclasses import replace

import numpy as np

from promptloop_agents.learners.sft import SFTExample
from promptloop_agents.policies.compose_teacher import CategoryRewriteAgent, load_selection
from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY
from promptloop_env.testing import compose_observation as observation
from promptloop_env.toy.compose import ComposeScene, Thing, render
from promptloop_env.toy.compose_spec import parse
from research.toy_compose.selection import SelectionEpisodes, compose_env_kwargs, select_category_rewrites
from research.toy_compose.students import (
    DESCRIBE_QUERY,
    StudentFit,
    describe_examples,
    distill,
    first_action_examples,
    fit_student,
    perception_examples,
    pretrain_perception,
    seen_text,
)

SCENE = ComposeScene((Thing("circle", "red", 16, 30, 7),), "white")  # a red circle only: compose_observation's
TINY = StudentFit(size="tiny", image_size=56, steps=2, progress=False)


def test_first_action_examples_cover_training_combinations_only():
    from promptloop_env.toy.compose import CATEGORIES
    from promptloop_env.toy.compose_prompts import TOY_COMPOSE_TEST_QUERIES

    choice = load_selection(SHIPPED_TOY_COMPOSE_POLICY)
    examples = first_action_examples(choice, 240, seed=3)
    test_keys = {parse(q).key() for q in TOY_COMPOSE_TEST_QUERIES}
    categories = [parse(ex.observation["query"]).category for ex in examples]
    assert all(categories.count(c) == 40 for c in CATEGORIES)
    assert not {parse(ex.observation["query"]).key() for ex in examples} & test_keys
    teacher = CategoryRewriteAgent(choice)
    for ex in examples:
        assert not ex.with_image and ex.observation["segment"] == 0
        assert ex.target == teacher.rewrite(ex.observation["query"])
    colour_pairs = {ex.observation["query"] for ex, c in zip(examples, categories, strict=True) if c == "color_attr"}
    assert len(colour_pairs) > 30  # drawn from the hundreds of colour-attribution combinations of the training side
    again = first_action_examples(choice, 240, seed=3)
    assert [e.observation["query"] for e in again] == [e.observation["query"] for e in examples]


def test_describe_examples_read_previews_left_to_right():
    two = ComposeScene((Thing("square", "blue", 48, 30, 7), Thing("circle", "red", 16, 30, 7)), "white")
    assert seen_text(render(two)) == "red circle, blue square"
    examples = [
        SFTExample(observation("a circle", "a circle", 2, 0.5, render(two)), "x"),
        SFTExample(observation("a circle", "a circle", 1, 0.2, render(two)), "x"),  # too early
        SFTExample(observation("a circle", "a circle", 2, 0.5, render(two)), "x", with_image=False),
    ]
    (aux,) = describe_examples(examples)
    assert aux.observation["query"] == DESCRIBE_QUERY and aux.target == "red circle, blue square"


def test_selection_and_distillation_run_end_to_end(tmp_path):
    queries = ["a circle", "a circle and a square", "two triangles"]
    selection = select_category_rewrites(SelectionEpisodes(queries, seeds_per_query=1, num_envs=3, progress=False))
    assert set(selection["choice"]) == {"single_object", "two_object", "counting"}
    report = distill(tmp_path / "policy", selection["choice"], queries, fit=TINY, num_envs=3)
    assert report["examples"] > 0 and load_selection(tmp_path / "policy") == selection["choice"]
    assert compose_env_kwargs()["refine_schedule"] == [0, 9, 11, 13, 15]


def test_perception_stage_labels_every_point_and_seeds_the_decision_fit(tmp_path):
    queries = ["a circle and a square", "two triangles"]
    choice = {"two_object": "count_up", "counting": "identity"}
    examples = perception_examples(queries, choice, seeds_per_query=2, points=(0, 8, 12), batch=3, progress=False)
    assert len(examples) == 2 * 2 * 2  # episodes x points after the first
    for ex in examples:
        assert ex.with_image and ex.observation["query"] == DESCRIBE_QUERY == ex.observation["prompt"]
        assert ex.target == seen_text(ex.observation["image"])  # the analyser's reading, nothing else
    timesteps = sorted({round(float(np.asarray(ex.observation["timestep"]).reshape(-1)[0]), 2) for ex in examples})
    assert timesteps == [0.4, 0.6]
    again = perception_examples(queries, choice, seeds_per_query=2, points=(0, 8, 12), batch=3, progress=False)
    for a, b in zip(again, examples, strict=True):  # seeded
        np.testing.assert_array_equal(a.observation["image"], b.observation["image"])
    report = pretrain_perception(tmp_path / "seen", examples, replace(TINY, seed=1))
    assert report["perception_examples"] == len(examples) - 1 and (tmp_path / "seen" / "perception.json").exists()
    decisions = [SFTExample(observation("a circle", "a circle", 2, 0.5), "two circles") for _ in range(6)]
    report = fit_student(
        tmp_path / "policy", decisions, choice, {}, TINY, init_vision=tmp_path / "seen", extra_describe=examples
    )
    assert report["vision_from"] == str(tmp_path / "seen")
    seen, student = (MLLMAgent.from_pretrained(tmp_path / name).model.model for name in ("seen", "policy"))
    # the vision tower starts from the perception stage's (two AdamW steps of 2e-3 move a weight by < 0.01) ...
    for (name, a), b in zip(seen.visual.state_dict().items(), student.visual.state_dict().values(), strict=True):
        assert (a - b).abs().max() < 0.01, name
    # ... and the language model starts fresh (seed 0; the perception stage's was initialised with seed 1)
    drift = seen.language_model.embed_tokens.weight - student.language_model.embed_tokens.weight
    assert drift.abs().max() > 0.1
    assert report["examples"] == 6 + 6 + len(examples) - 4  # decisions, their describe twins, the extra; 4 held

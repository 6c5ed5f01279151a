"""The toy-compose learner: one-shot rewrite, teacher rules, perception examples, distillation and the demo."""

import json

import numpy as np
import pytest

from promptloop_agents.learners.sft import SFTExample
from promptloop_agents.policies.compose_teacher import (
    DESCRIBE_QUERY,
    CategoryRewriteAgent,
    ComposeTeacher,
    compose_env_kwargs,
    corrective_prompt,
    describe_examples,
    distill,
    first_action_examples,
    fit_student,
    load_selection,
    perception_examples,
    pretrain_perception,
    seen_text,
    select_category_rewrites,
)
from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY
from promptloop_env.toy.compose import ComposeScene, Thing, render
from promptloop_env.toy.compose_spec import parse

SCENE = ComposeScene((Thing("circle", "red", 16, 30, 7),), "white")  # a red circle only


def observation(query, prompt, segment, timestep, image=None):
    image = render(SCENE) if image is None else image
    return {"query": query, "prompt": prompt, "segment": segment, "timestep": np.array([timestep]), "image": image}


def test_one_shot_rewrite_follows_the_category():
    agent = CategoryRewriteAgent({"two_object": "count_up", "single_object": "identity"})
    assert agent.rewrite("a circle and a square") == "two circles and two squares"
    assert agent.rewrite("a circle") == "a circle"
    assert agent.act(observation("three squares", "three squares", 0, 0.0)) == "three squares"  # not chosen: query
    assert agent.uses_previews is False


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


def test_corrective_rules_change_only_what_the_preview_shows_wrong():
    query = parse("a red circle and a blue square")
    # the square is missing: its count goes up by one over the prompt in force; the circle keeps its count
    prompt = corrective_prompt(query, render(SCENE), "two red circles and two blue squares")
    assert prompt == "two red circles and three blue squares"
    both = ComposeScene(SCENE.things + (Thing("square", "blue", 48, 30, 7),), "white")
    assert corrective_prompt(query, render(both), "a red circle and a blue square") == "a red circle and a blue square"
    blank = np.full((64, 64, 3), 255, np.uint8)  # nothing visible yet: keep the prompt
    assert corrective_prompt(query, blank, "anything") == "anything"
    # counting: the count moves by the error (one seen, three wanted: ask for five, at most four)
    assert corrective_prompt(parse("three red circles"), render(SCENE), "four red circles") == "four red circles"
    assert corrective_prompt(parse("two red circles"), render(SCENE), "two red circles") == "three red circles"


def test_teacher_starts_with_the_rewrite_keeps_early_and_applies_its_rule():
    teacher = ComposeTeacher({"color_attr": "count_up"}, {"color_attr": "corrective"})
    query = "a red circle and a blue square"
    assert teacher.act(observation(query, query, 0, 0.0)) == "two red circles and two blue squares"
    early = observation(query, "two red circles and two blue squares", 1, 0.2)
    assert teacher.act(early) == "two red circles and two blue squares"  # before objects appear: keep
    late = observation(query, "two red circles and two blue squares", 2, 0.5)
    assert teacher.act(late) == "two red circles and three blue squares"
    keeper = ComposeTeacher({"color_attr": "count_up"}, {"color_attr": "keep"})
    assert keeper.act(late) == "two red circles and two blue squares"


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


def test_the_shipped_policy_carries_its_selection_and_rules(tmp_path):
    choice = load_selection(SHIPPED_TOY_COMPOSE_POLICY)
    assert set(choice) == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    rules = json.loads((SHIPPED_TOY_COMPOSE_POLICY / "teacher_rules.json").read_text())["rules"]
    assert set(rules.values()) <= {"keep", "oracle", "corrective"}
    with pytest.raises(FileNotFoundError, match="compose_teacher"):
        load_selection(tmp_path)


def test_selection_and_distillation_run_end_to_end(tmp_path):
    queries = ["a circle", "a circle and a square", "two triangles"]
    selection = select_category_rewrites(queries, seeds_per_query=1, num_envs=3, progress=False)
    assert set(selection["choice"]) == {"single_object", "two_object", "counting"}
    report = distill(
        tmp_path / "policy", selection["choice"], queries, size="tiny", image_size=56, steps=2, num_envs=3,
        progress=False,
    )  # fmt: skip
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
    report = pretrain_perception(
        tmp_path / "seen", examples, size="tiny", image_size=56, steps=2, seed=1, progress=False
    )  # fmt: skip
    assert report["perception_examples"] == len(examples) - 1 and (tmp_path / "seen" / "perception.json").exists()
    decisions = [SFTExample(observation("a circle", "a circle", 2, 0.5), "two circles") for _ in range(6)]
    report = fit_student(
        tmp_path / "policy", decisions, choice, {}, size="tiny", image_size=56, steps=2, progress=False,
        init_vision=tmp_path / "seen",
        extra_describe=examples,
    )  # fmt: skip
    assert report["vision_from"] == str(tmp_path / "seen")
    seen, student = (MLLMAgent.from_pretrained(tmp_path / name).model.model for name in ("seen", "policy"))
    # the vision tower starts from the perception stage's (two AdamW steps of 2e-3 move a weight by < 0.01) ...
    for (name, a), b in zip(seen.visual.state_dict().items(), student.visual.state_dict().values(), strict=True):
        assert (a - b).abs().max() < 0.01, name
    # ... and the language model starts fresh (seed 0; the perception stage's was initialised with seed 1)
    drift = seen.language_model.embed_tokens.weight - student.language_model.embed_tokens.weight
    assert drift.abs().max() > 0.1
    assert report["examples"] == 6 + 6 + len(examples) - 4  # decisions, their describe twins, the extra; 4 held


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    from promptloop_agents.cli.demo import DemoConfig, run_demo

    out = tmp_path / "demo"
    payload = run_demo(DemoConfig(out=str(out), max_steps=1, eval_queries=6, seeds_per_query=1, progress=False))
    assert {"identity", "best_one_shot_rewrite", "policy_a_priori", "policy_closed_loop"} == set(payload["agents"])
    for name in ("metrics.json", "reward_curve.png", "filmstrip.png", "before_after.png", "policy"):
        assert (out / name).exists(), name

"""The toy-compose reference agents of the library: the one-shot rewrite, the corrective rule, the exact-reader
teacher, the shipped policy's files, and the demo."""

import json

import numpy as np
import pytest

from promptloop_agents.policies.compose_teacher import (
    CategoryRewriteAgent,
    ComposeTeacher,
    apply_rewrite,
    corrective_prompt,
    load_selection,
)
from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY
from promptloop_env.testing import compose_observation as observation
from promptloop_env.toy.compose import ComposeScene, Thing, render
from promptloop_env.toy.compose_spec import parse

SCENE = ComposeScene((Thing("circle", "red", 16, 30, 7),), "white")  # a red circle only: compose_observation's


def test_one_shot_rewrite_follows_the_category():
    agent = CategoryRewriteAgent({"two_object": "count_up", "single_object": "identity"})
    assert agent.rewrite("a circle and a square") == "two circles and two squares"
    assert agent.rewrite("a circle") == "a circle"
    assert agent.act(observation("three squares", "three squares", 0, 0.0)) == "three squares"  # not chosen: query
    assert agent.uses_previews is False


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
    with pytest.raises(ValueError, match="Unknown teacher rule"):
        ComposeTeacher({}, {"colors": "corective"})
    assert apply_rewrite("identity", query) == query


def test_the_shipped_policy_carries_its_selection_and_rules(tmp_path):
    choice = load_selection(SHIPPED_TOY_COMPOSE_POLICY)
    assert set(choice) == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    rules = json.loads((SHIPPED_TOY_COMPOSE_POLICY / "teacher_rules.json").read_text())["rules"]
    assert set(rules.values()) <= {"keep", "oracle", "corrective"}
    with pytest.raises(FileNotFoundError, match="selection.json"):
        load_selection(tmp_path)


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    from promptloop_agents.cli.demo import DemoConfig, run_demo

    out = tmp_path / "demo"
    payload = run_demo(DemoConfig(out=str(out), max_steps=1, eval_queries=6, seeds_per_query=1, progress=False))
    assert {"identity", "best_one_shot_rewrite", "policy_a_priori", "policy_closed_loop"} == set(payload["agents"])
    for name in ("metrics.json", "reward_curve.png", "filmstrip.png", "comparison.png", "policy"):
        assert (out / name).exists(), name


def test_the_library_never_imports_research():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for package in ("promptloop_env", "promptloop_agents"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                assert not [n for n in names if n.split(".")[0] == "research"], path

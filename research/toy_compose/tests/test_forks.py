"""Training the toy-compose policy from forks: candidates, labels by outcome, and a small collection."""

import numpy as np
import pytest

from promptloop_env.toy.compose import ComposeScene, Thing, render
from research.toy_compose.forks import collect_forks, fork_candidates, fork_report, label_forks

SCENE = ComposeScene((Thing("circle", "red", 16, 30, 7),), "white")  # a red circle only


def record(category, strict, prompts=None):
    prompts = prompts or {name: name for name in strict}
    return {"query": "q", "seed": 0, "category": category, "prompts": prompts, "strict": strict, "soft": strict}


def test_candidates_are_distinct_texts_keep_first():
    query = "a red circle and a blue square"
    out = fork_candidates(query, render(SCENE), query)
    assert next(iter(out)) == "keep" and out["keep"] == query
    assert len(set(out.values())) == len(out)
    assert "identity" not in out  # the same text as keep
    # the blue square is missing on the preview: the corrective rule asks for one more
    assert out["corrective_rule"] == "a red circle and two blue squares"


def test_labels_keep_unless_only_another_candidate_succeeds():
    records = [
        record("counting", {"keep": 1.0, "count_up": 1.0, "swap": 0.0}),  # keeping succeeds: keep
        record("counting", {"keep": 0.0, "count_up": 0.0, "swap": 0.0}),  # nothing succeeds: keep
        record("counting", {"keep": 0.0, "count_up": 1.0, "swap": 1.0}),  # both succeed: the better ranked
        record("counting", {"keep": 0.0, "count_up": 1.0, "swap": 0.0}),
        record("position", {"keep": 0.0, "count_up": 0.0, "swap": 1.0}),
    ]
    ranking = label_forks(records)
    assert ranking["counting"][0] == "count_up"  # succeeds in 2 of the 3 forks where keeping fails
    assert [r["label"] for r in records] == ["keep", "keep", "count_up", "count_up", "swap"]
    report = fork_report(records)
    assert report["changed_share"] == pytest.approx(0.6)
    assert report["all"] == {"keep": 0.2, "label": 0.8, "n": 5}
    assert report["counting"]["label"] == 0.75


def test_collect_forks_records_every_candidate_and_marks_the_fork_examples():
    choice = {"two_object": "count_up", "single_object": "identity"}
    queries = ["a circle and a square", "a triangle"]
    examples, records = collect_forks(
        queries, 1, choice, schedule=(0, 6, 8, 10, 12), fork_step=8, chunk=2, progress=False
    )
    assert len(examples) == 2 * 5 and len(records) == 2
    for r in records:
        assert set(r["strict"]) == set(r["prompts"]) and "keep" in r["prompts"]
        assert all(v in (0.0, 1.0) for v in r["strict"].values())
        fork = examples[r["example"]]
        assert fork.target == "" and fork.observation["segment"] == 2 and fork.observation["query"] == r["query"]
    first = [ex for ex in examples if ex.observation["segment"] == 0]
    assert sorted(ex.target for ex in first) == ["a triangle", "two circles and two squares"]
    later = [ex for ex in examples if ex.observation["segment"] in (1, 3, 4)]
    assert all(ex.target == ex.observation["prompt"] for ex in later)  # keep elsewhere
    with pytest.raises(ValueError, match="fork_step=7"):
        collect_forks(queries, 1, choice, schedule=(0, 6, 8, 10, 12), fork_step=7, progress=False)
    assert np.isfinite([r["soft"]["keep"] for r in records]).all()

"""The feedback-headroom analysis (compose_feedback_headroom.py) on records whose answer is known."""

import numpy as np
import pytest

from research.toy_compose import compose_feedback_headroom


@pytest.fixture
def headroom():
    return compose_feedback_headroom


def _records(informative: bool, n: int = 80) -> list[dict]:
    """Two-object queries forked at step 9: ``count_up`` wins when the preview misses an object, ``keep`` otherwise;
    with ``informative`` the reading tells which, else the reading is the same for all."""
    rng = np.random.default_rng(0)
    names = ["keep", "identity", "caption", "count_up", "oracle_rule", "corrective_rule"]
    out = []
    for i in range(n):
        missing = bool(rng.integers(2))
        strict = dict.fromkeys(names, 0.0)
        strict["count_up" if missing else "keep"] = 1.0
        reading = ("circle=1,square=0" if missing else "circle=1,square=1") if informative else "no object"
        query = f"a circle and a square {i}"
        prompts = {name: f"{name} {i}" for name in names}
        out.append(
            {"query": query, "seed": 0, "category": "two_object", "step": 9, "reading": reading}
            | {"prompts": prompts, "strict": strict, "soft": dict(strict)}
        )
    return out


def test_closed_loop_gains_only_where_the_preview_tells(headroom, monkeypatch):
    monkeypatch.setattr(headroom, "FIXED", ("keep", "identity", "caption", "count_up"))
    informative = headroom.analyse(_records(True))["9"]["differences"]["closed_loop-a_priori"]
    assert informative["mean"] > 0.3 and informative["ci_low"] > 0
    blind = headroom.analyse(_records(False))["9"]
    assert blind["differences"]["closed_loop-a_priori"]["mean"] == 0.0
    assert blind["means"]["foresight"]["mean"] == 1.0  # the ceiling knows each episode's winner
    assert headroom.satisfied("circle=1,square=0") == "1/2" and headroom.satisfied("no object") == "no object"

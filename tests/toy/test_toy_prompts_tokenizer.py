"""Prompt sets and the tokenizer."""

import pytest

from promptloop_env.toy.prompts import (
    QUERY_STYLES,
    TOY_TEST_QUERIES,
    TOY_TRAIN_QUERIES,
    TOY_USER_TEST_QUERIES,
    TOY_USER_TRAIN_QUERIES,
    make_query_sets,
    query_split,
)
from promptloop_env.toy.tokenizer import build_tokenizer, world_words
from promptloop_env.toy.world import USER_STYLES, parse_query

SETS = [(TOY_TRAIN_QUERIES, TOY_TEST_QUERIES, False), (TOY_USER_TRAIN_QUERIES, TOY_USER_TEST_QUERIES, True)]


@pytest.mark.parametrize("train, test, users", SETS, ids=["captions", "users"])
def test_prompt_sets_disjoint_and_deterministic(train, test, users):
    assert len(train) == 1000 and len(test) == 200
    assert isinstance(train, tuple) and all(isinstance(q, str) for q in test)
    assert len(set(train)) == 1000 and len(set(test)) == 200
    assert set(train).isdisjoint(test)
    assert make_query_sets(users=users) == (train, test)


@pytest.mark.parametrize("train, test, users", SETS, ids=["captions", "users"])
def test_prompt_sets_split_by_named_attributes(train, test, users):
    train_keys = {tuple(sorted(parse_query(q).items())) for q in train}
    test_keys = {tuple(sorted(parse_query(q).items())) for q in test}
    assert train_keys.isdisjoint(test_keys)
    assert all(query_split(q) == "test" for q in test)
    assert all(len(parse_query(q)) >= 2 for q in train + test)


def test_prompt_sets_are_registered():
    from promptloop_env.prompts import resolve_prompts

    assert resolve_prompts("toy-user-test", None) == TOY_USER_TEST_QUERIES
    assert resolve_prompts("toy-test", None) == TOY_TEST_QUERIES
    assert set(QUERY_STYLES) == set(TOY_USER_TRAIN_QUERIES + TOY_USER_TEST_QUERIES)


def test_tokenizer_world_words_are_single_tokens_and_round_trip(tmp_path):
    from transformers import CLIPTokenizer

    tok = build_tokenizer()
    assert all(len(tok.tokenize(w)) == 1 for w in world_words())
    assert len(tok.tokenize("crimson")) > 1  # unknown words fall back to pieces
    tok.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    for text in ["a large red circle on the left, gray background", "A Crimson blob, upper-left!!", ""]:
        ids = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
        assert again(text, padding="max_length", max_length=32, truncation=True).input_ids == ids
        assert len(ids) == 32
    assert again.model_max_length == tok.model_max_length == 32
    assert tok.decode(tok("a red circle").input_ids, skip_special_tokens=True) == "a red circle"


def test_user_queries_name_exactly_their_attributes_in_every_style():
    import random

    import pytest

    from promptloop_env.toy.world import USER_STYLES, random_scene, user_query

    rng = random.Random(0)
    for _ in range(400):
        scene = random_scene(rng, jitter=False)
        for style in USER_STYLES:
            for omit in ({}, None):
                state = rng.getstate()
                text = user_query(scene, rng, omit=omit, style=style)
                rng.setstate(state)  # the same draws again give the named attributes the text was written from
                named = user_query.__globals__["_named"](scene, rng, omit)
                assert parse_query(text) == {
                    k: named[k] for k in ("colour", "shape", "size", "position", "background") if k in named
                }, text  # noqa: E501
    with pytest.raises(ValueError, match="style must be one of"):
        user_query(scene, rng, style="shouting")
    assert abs(sum(p for p, _ in USER_STYLES.values()) - 1) < 1e-9


def test_user_query_styles_follow_their_probabilities(monkeypatch):
    import random

    from promptloop_env.toy import world

    counts = dict.fromkeys(world.USER_STYLES, 0)

    def counting(name, writer):
        def wrapped(named, rng):
            counts[name] += 1
            return writer(named, rng)

        return wrapped

    patched = {name: (p, counting(name, writer)) for name, (p, writer) in world.USER_STYLES.items()}
    monkeypatch.setattr(world, "USER_STYLES", patched)
    rng = random.Random(1)
    for _ in range(4000):
        world.user_query(world.random_scene(rng, jitter=False), rng)
    for name, (probability, _) in patched.items():
        assert abs(counts[name] / 4000 - probability) < 0.03, (name, counts[name])


def test_user_query_sets_hold_user_wordings():
    assert any(q.startswith(("on the", "at the", "to the", "in the")) for q in TOY_USER_TEST_QUERIES)
    assert any(" background with " in q for q in TOY_USER_TEST_QUERIES)
    assert any("grey" in q or "centre" in q for q in TOY_USER_TEST_QUERIES)
    assert {QUERY_STYLES[q] for q in TOY_USER_TEST_QUERIES} == set(USER_STYLES)
    assert not any("grey" in q or "centre" in q for q in TOY_TEST_QUERIES)  # the caption sets use no aliases

"""Prompt sets and the tokenizer."""

from promptloop_env.toy.prompts import TOY_TEST_QUERIES, TOY_TRAIN_QUERIES, make_query_sets, query_split
from promptloop_env.toy.tokenizer import build_tokenizer, world_words
from promptloop_env.toy.world import parse_query


def test_prompt_sets_disjoint_and_deterministic():
    assert len(TOY_TRAIN_QUERIES) == 1000 and len(TOY_TEST_QUERIES) == 200
    assert isinstance(TOY_TRAIN_QUERIES, tuple) and all(isinstance(q, str) for q in TOY_TEST_QUERIES)
    assert len(set(TOY_TRAIN_QUERIES)) == 1000 and len(set(TOY_TEST_QUERIES)) == 200
    assert set(TOY_TRAIN_QUERIES).isdisjoint(TOY_TEST_QUERIES)
    assert make_query_sets() == (TOY_TRAIN_QUERIES, TOY_TEST_QUERIES)


def test_prompt_sets_split_by_named_attributes():
    train_keys = {tuple(sorted(parse_query(q).items())) for q in TOY_TRAIN_QUERIES}
    test_keys = {tuple(sorted(parse_query(q).items())) for q in TOY_TEST_QUERIES}
    assert train_keys.isdisjoint(test_keys)
    assert all(query_split(q) == "test" for q in TOY_TEST_QUERIES)
    assert all(len(parse_query(q)) >= 2 for q in TOY_TRAIN_QUERIES + TOY_TEST_QUERIES)


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

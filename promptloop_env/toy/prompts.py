"""Train and held-out test queries of the toy world, split by the attributes they name.

Two query distributions, each with a train and a held-out test set:

- ``toy-train`` / ``toy-test`` (:data:`TOY_TRAIN_QUERIES`, :data:`TOY_TEST_QUERIES`): captions in the template
  the model was trained on (:func:`~promptloop_env.toy.world.caption`). The model follows them well; the
  toy world's quality bars are measured on these.
- ``toy-user-train`` / ``toy-user-test`` (:data:`TOY_USER_TRAIN_QUERIES`, :data:`TOY_USER_TEST_QUERIES`): what
  users type (:func:`~promptloop_env.toy.world.user_query`): 40% in the caption template, 60% in four other
  wordings of the same world words (position first, background first, terse lists, noun first; "grey" and
  "centre" half of the time), which the model follows less well. Rewriting a query into the model's own
  template is the first thing a prompt policy can learn here; the learner's demo trains and evaluates on these.

Each is drawn from a fixed-seed ``random.Random`` (its stream is stable across Python versions), keeping
queries that name at least two attributes. A query goes to the test set when a hash of the attributes it names
(not of its wording) falls in the test fifth, so no test query shares its set of named attribute values with
any train query, and the two sets are disjoint by text. All are deterministic.

>>> len(TOY_TRAIN_QUERIES), len(TOY_TEST_QUERIES), len(TOY_USER_TRAIN_QUERIES), len(TOY_USER_TEST_QUERIES)
(1000, 200, 1000, 200)
>>> set(TOY_TRAIN_QUERIES).isdisjoint(TOY_TEST_QUERIES)
True
"""

from __future__ import annotations

import hashlib
import random

from promptloop_env.prompts import PROMPT_SETS
from promptloop_env.toy.world import caption, parse_query, random_scene, user_query_and_style

_SEED = 20261128
_TEST_FRACTION_BUCKETS = 5  # one bucket of five goes to test
_MIN_NAMED = 2


def query_split(query: str) -> str:
    """``"train"`` or ``"test"``: which side of the split a query's named attributes fall on."""
    key = "|".join(f"{k}={v}" for k, v in sorted(parse_query(query).items()))
    bucket = int(hashlib.sha256(key.encode()).hexdigest(), 16) % _TEST_FRACTION_BUCKETS
    return "test" if bucket == 0 else "train"


def make_query_sets(
    num_train: int = 1000,
    num_test: int = 200,
    seed: int = _SEED,
    users: bool = False,
    styles: dict[str, str] | None = None,
) -> tuple[tuple[str, ...], ...]:
    """Draw ``num_train`` train and ``num_test`` test queries (unique texts), deterministically.

    Args:
        num_train, num_test: set sizes.
        seed: seed of the draw.
        users: users' wordings (:func:`user_query`) instead of the caption template (:func:`caption`).
        styles: if given, receives each kept query's wording style (a key of ``USER_STYLES``).
    """
    rng = random.Random(seed)
    sets: dict[str, list[str]] = {"train": [], "test": []}
    wanted = {"train": num_train, "test": num_test}
    seen: set[str] = set()
    while any(len(sets[k]) < wanted[k] for k in sets):
        scene = random_scene(rng, jitter=False)
        query, style = user_query_and_style(scene, rng) if users else (caption(scene, rng), "caption")
        if query in seen or len(parse_query(query)) < _MIN_NAMED:
            continue
        seen.add(query)
        side = query_split(query)
        if len(sets[side]) < wanted[side]:
            sets[side].append(query)
            if styles is not None:
                styles[query] = style
    return tuple(sets["train"]), tuple(sets["test"])


TOY_TRAIN_QUERIES, TOY_TEST_QUERIES = make_query_sets()
"""The caption-template sets: 1000 train and 200 held-out test queries (tuples of str)."""
QUERY_STYLES: dict[str, str] = {}
"""The wording style of every users' query (``"caption"`` is the training template)."""
TOY_USER_TRAIN_QUERIES, TOY_USER_TEST_QUERIES = make_query_sets(users=True, styles=QUERY_STYLES)
"""The users' sets: 1000 train and 200 held-out test queries (tuples of str)."""

for _name, _queries in {
    "toy-train": TOY_TRAIN_QUERIES,
    "toy-test": TOY_TEST_QUERIES,
    "toy-user-train": TOY_USER_TRAIN_QUERIES,
    "toy-user-test": TOY_USER_TEST_QUERIES,
}.items():
    PROMPT_SETS.register(_name, _queries)

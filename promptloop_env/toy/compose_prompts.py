"""``toy-compose`` prompt sets: GenEval's six categories, split by the combination each query names.

- ``toy-compose-train`` / ``toy-compose-test`` (:data:`TOY_COMPOSE_TRAIN_QUERIES`,
  :data:`TOY_COMPOSE_TEST_QUERIES`): the caption template (:func:`~promptloop_env.toy.compose.caption`),
  100 and 20 queries per category, in category order.
- ``toy-compose-user-train`` / ``toy-compose-user-test``: the same combinations in users' wordings
  (:data:`USER_STYLES`: the template, GenEval's own ``a photo of ...``, terse lists with digits, sentences).

Every combination of a category (its groups, relation and background; :meth:`Query.key`) is enumerated and sent
to the test side when a hash of it falls in the test quarter, so no test combination is ever trained on.
Categories with few combinations (``single_object`` has 15, ``two_object`` 30, counting 45) cycle through theirs,
so their texts repeat within a set; seeds differ per entry wherever sets are evaluated. 30% of the entries name a
background. All is deterministic.

>>> len(TOY_COMPOSE_TRAIN_QUERIES), len(TOY_COMPOSE_TEST_QUERIES)
(600, 120)
>>> from promptloop_env.toy.compose_spec import parse
>>> {parse(q).key() for q in TOY_COMPOSE_TEST_QUERIES}.isdisjoint(parse(q).key() for q in TOY_COMPOSE_TRAIN_QUERIES)
True
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable

from promptloop_env.prompts import PROMPT_SETS
from promptloop_env.toy.compose import CATEGORIES, RELATIONS, Group, Query, caption, group_text
from promptloop_env.toy.world import BACKGROUNDS, COLOURS, SHAPES

_SEED = 20261202
_TEST_BUCKETS = 4  # one bucket of four goes to test
BACKGROUND_FRACTION = 0.3


def combinations(category: str) -> list[Query]:
    """Every query of ``category`` (with and without each background), white-on-white excluded."""
    pairs = list(itertools.permutations(SHAPES, 2))
    if category == "single_object":
        bases = [Query(category, (Group(s),)) for s in SHAPES]
    elif category == "two_object":
        bases = [Query(category, (Group(a), Group(b))) for a, b in pairs]
    elif category == "counting":
        bases = [Query(category, (Group(s, n),)) for s in SHAPES for n in (2, 3, 4)]
    elif category == "colors":
        bases = [Query(category, (Group(s, 1, c),)) for s in SHAPES for c in COLOURS]
    elif category == "position":
        bases = [Query(category, (Group(a), Group(b)), r) for a, b in pairs for r in RELATIONS]
    elif category == "color_attr":
        colour_pairs = [(c, d) for c in COLOURS for d in COLOURS if c != d]
        bases = [Query(category, (Group(a, 1, c), Group(b, 1, d))) for a, b in pairs for c, d in colour_pairs]
    else:
        raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
    out = []
    for base, background in itertools.product(bases, (None, *BACKGROUNDS)):
        if background == "white" and any(g.colour == "white" for g in base.groups):
            continue
        out.append(Query(base.category, base.groups, base.relation, background))
    return out


def query_split(query: Query) -> str:
    """``"train"`` or ``"test"``: the side of the split of the combination ``query`` names."""
    bucket = int(hashlib.sha256(query.key().encode()).hexdigest(), 16) % _TEST_BUCKETS
    return "test" if bucket == 0 else "train"


def _photo(query: Query, rng: random.Random) -> str:
    return "a photo of " + caption(query)


def _terse(query: Query, rng: random.Random) -> str:
    def item(g: Group) -> str:
        noun = g.shape + ("s" if g.count > 1 else "")
        return " ".join(w for w in (str(g.count) if g.count > 1 else "", g.colour or "", noun) if w)

    joint = f" {query.relation} " if query.relation else ", "
    text = joint.join(item(g) for g in query.groups)
    return text + (f", {query.background} background" if query.background else "")


def _sentence(query: Query, rng: random.Random) -> str:
    groups = [group_text(g) for g in query.groups]
    verb = "is" if query.groups[0].count == 1 else "are"
    if query.relation:
        text = f"there {verb} {groups[0]} {RELATIONS[query.relation]} {groups[1]}"
    else:
        text = f"there {verb} " + " and ".join(groups)
    return text + (f" on a {query.background} background" if query.background else "")


def _caption(query: Query, rng: random.Random) -> str:
    return caption(query)


USER_STYLES: dict[str, tuple[float, Callable[[Query, random.Random], str]]] = {
    "caption": (0.4, _caption),  # "two red triangles, teal background"
    "photo": (0.2, _photo),  # "a photo of two red triangles, teal background"
    "terse": (0.2, _terse),  # "2 red triangles, teal background"; "circle left of square"
    "sentence": (0.2, _sentence),  # "there are two red triangles on a teal background"
}
"""Style name -> (probability, writer)."""


def make_query_sets(
    per_category_train: int = 100, per_category_test: int = 20, users: bool = False, seed: int = _SEED
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Train and test texts, ``per_category_*`` of each category, in :data:`CATEGORIES` order."""
    rng = random.Random(seed)
    sets: dict[str, list[str]] = {"train": [], "test": []}
    wanted = {"train": per_category_train, "test": per_category_test}
    for category in CATEGORIES:
        for side in ("train", "test"):
            pool = [q for q in combinations(category) if query_split(q) == side]
            plain = [q for q in pool if q.background is None]
            coloured = [q for q in pool if q.background is not None]
            rng.shuffle(plain)
            rng.shuffle(coloured)
            cycles = {True: itertools.cycle(coloured), False: itertools.cycle(plain)}
            for _ in range(wanted[side]):
                query = next(cycles[rng.random() < BACKGROUND_FRACTION])
                if users:
                    u, writer = rng.random(), _caption
                    for probability, candidate in USER_STYLES.values():
                        if u < probability:
                            writer = candidate
                            break
                        u -= probability
                    sets[side].append(writer(query, rng))
                else:
                    sets[side].append(caption(query))
    return tuple(sets["train"]), tuple(sets["test"])


TOY_COMPOSE_TRAIN_QUERIES, TOY_COMPOSE_TEST_QUERIES = make_query_sets()
"""The caption-template sets: 600 train and 120 held-out test queries, 100 and 20 per category."""
TOY_COMPOSE_USER_TRAIN_QUERIES, TOY_COMPOSE_USER_TEST_QUERIES = make_query_sets(users=True)
"""The users' wordings of the same combinations."""

for _name, _queries in {
    "toy-compose-train": TOY_COMPOSE_TRAIN_QUERIES,
    "toy-compose-test": TOY_COMPOSE_TEST_QUERIES,
    "toy-compose-user-train": TOY_COMPOSE_USER_TRAIN_QUERIES,
    "toy-compose-user-test": TOY_COMPOSE_USER_TEST_QUERIES,
}.items():
    PROMPT_SETS.register(_name, _queries)

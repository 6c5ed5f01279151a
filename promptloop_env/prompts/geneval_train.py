"""``geneval-train``: training prompts in GenEval's grammar, none of them one of its 553 evaluation prompts.

GenEval's evaluation prompts are its benchmark, so training a policy on them (as a reward) would leak the test.
This set is written by the same six templates over the same 80 classes and ten colours
(:mod:`promptloop_env.rewards.geneval_grammar`), every combination enumerated, those whose text is an evaluation
prompt removed, and at most ``per_category`` of each category kept in a seeded order. ``single_object`` has no
prompt left (GenEval evaluates all 80), counting 160 (two to four of a class), colours 696 (no coloured person,
as GenEval). Every prompt carries its metadata, so the ``geneval`` reward scores it.

>>> train = geneval_train_set()
>>> len(train), train.category_counts()["counting"]
(3856, 160)
"""

from __future__ import annotations

import functools
import random

from promptloop_env.geneval_rules import COLOURS, RELATIONS
from promptloop_env.prompts.sets import PromptSet, index_metadata, load_data_set
from promptloop_env.rewards.geneval_grammar import GENEVAL_CLASSES, plural

_SEED = 20261208
_NUMBERS = {2: "two", 3: "three", 4: "four"}


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _entry(tag: str, i: int) -> dict:
    """The ``i``-th combination of ``tag`` (GenEval's template and metadata), without listing them all."""
    coloured = [c for c in GENEVAL_CLASSES if c != "person"]  # GenEval writes no coloured person
    if tag == "counting":
        c, k = GENEVAL_CLASSES[i // 3], 2 + i % 3
        return {"include": [{"class": c, "count": k}], "exclude": [{"class": c, "count": k + 1}],
                "prompt": f"a photo of {_NUMBERS[k]} {plural(c)}"}  # fmt: skip
    if tag == "colors":
        c, k = coloured[i // len(COLOURS)], COLOURS[i % len(COLOURS)]
        return {"include": [{"class": c, "count": 1, "color": k}], "prompt": f"a photo of {_article(k)} {c}"}
    if tag == "color_attr":
        pair, colours = divmod(i, len(COLOURS) * (len(COLOURS) - 1))
        a, b = _pair(coloured, pair)
        ka, kb = _pair(list(COLOURS), colours)
        include = [{"class": a, "count": 1, "color": ka}, {"class": b, "count": 1, "color": kb}]
        return {"include": include, "prompt": f"a photo of {_article(ka)} {a} and {_article(kb)} {b}"}
    if tag == "position":
        pair, r = divmod(i, len(RELATIONS))
        a, b = _pair(list(GENEVAL_CLASSES), pair)
        return {"include": [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [RELATIONS[r], 0]}],
                "prompt": f"a photo of {_article(a)} {RELATIONS[r]} {_article(b)}"}  # fmt: skip
    a, b = _pair(list(GENEVAL_CLASSES), i)  # two_object
    return {"include": [{"class": a, "count": 1}, {"class": b, "count": 1}],
            "prompt": f"a photo of {_article(a)} and {_article(b)}"}  # fmt: skip


def _pair(items: list[str], i: int) -> tuple[str, str]:
    """The ``i``-th ordered pair of two different items."""
    first, second = divmod(i, len(items) - 1)
    return items[first], items[second + (second >= first)]


def _size(tag: str) -> int:
    n, k, c = len(GENEVAL_CLASSES), len(COLOURS), len(GENEVAL_CLASSES) - 1
    return {"two_object": n * (n - 1), "counting": 3 * n, "colors": c * k, "position": n * (n - 1) * len(RELATIONS),
            "color_attr": c * (c - 1) * k * (k - 1)}[tag]  # fmt: skip


@functools.lru_cache(maxsize=4)
def geneval_train_set(per_category: int = 1000, seed: int = _SEED) -> PromptSet:
    """The set (see the module doc): up to ``per_category`` prompts of each category, in category order."""
    evaluation = set(load_data_set("geneval").prompts)
    rng = random.Random(seed)
    prompts, metadata = [], []
    for tag in ("two_object", "counting", "colors", "position", "color_attr"):
        size = _size(tag)
        # Draw a few more than needed: the ones that are evaluation prompts (at most 100 a category) are dropped.
        drawn = rng.sample(range(size), min(size, per_category + 100))
        kept = [i for i in drawn if _entry(tag, i)["prompt"] not in evaluation][:per_category]
        for i in sorted(kept):
            entry = _entry(tag, i)
            prompts.append(entry["prompt"])
            metadata.append({"tag": tag, **entry})
    prompt_set = PromptSet("geneval-train", tuple(prompts), tuple(metadata), "written by GenEval's templates", "")
    index_metadata(prompt_set)
    return prompt_set

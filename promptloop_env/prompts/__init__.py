"""Prompt sets (queries): built-in sets by name, shipped data sets with metadata, and users' files.

``prompts=`` (and the CLI's ``--train_prompts`` / ``--eval_prompts``) takes a name of :data:`PROMPT_SETS` or the
path of a prompt file (``.txt``, ``.jsonl`` with metadata, ``.csv`` / ``.tsv``, optionally ``.gz``; see
:mod:`promptloop_env.prompts.sets`). The real sets ship as data files with their provenance
(``data/PROVENANCE.md``): ``geneval`` (553, with GenEval's metadata), ``pickapic-train`` / ``pickapic-test``
(Flow-GRPO's Pick-a-Pic lists), ``parti`` (PartiPrompts) and ``drawbench``; ``geneval-train`` is written in
GenEval's grammar, disjoint from its evaluation prompts (:mod:`promptloop_env.prompts.geneval_train`).
:func:`load_prompts` returns a :class:`~promptloop_env.prompts.sets.PromptSet` (a sequence of str with each
prompt's metadata), and
:meth:`~promptloop_env.prompts.sets.PromptSet.draw` draws ``--max-queries`` of them across the categories.

>>> load_prompts("drawbench").describe()[:40]
'drawbench: 200 prompts, 11 categories (C'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from promptloop_env.prompts.sets import (
    DATA_SETS,
    PromptSet,
    index_metadata,
    load_data_set,
    metadata_for,
    read_prompt_file,
)
from promptloop_env.registry import Registry

logger = logging.getLogger(__name__)

SIMPLE_ANIMALS: tuple[str, ...] = tuple(
    f"a photo of a {animal}"
    for animal in (
        "cat dog horse monkey rabbit zebra spider bird sheep deer cow goat lion tiger bear raccoon fox wolf "
        "lizard beetle ant butterfly fish shark whale dolphin squirrel mouse rat snake turtle frog chicken "
        "duck goose bee pig turkey fly llama camel bat gorilla hedgehog kangaroo"
    ).split()
)
"""DDPO's ``simple_animals`` prompts: the fallback set of any backbone without a set of its own."""

PROMPT_SETS: Registry[Sequence[str] | Callable[[], Sequence[str]]] = Registry(
    "prompt set", hint="A path to a .txt, .jsonl, .csv or .tsv prompt file is also accepted."
)
"""The named prompt sets: the queries, or a function without arguments that returns them (loaded on use).

The shipped data sets are registered here, the toy worlds' sets by their modules
(:mod:`promptloop_env.toy.prompts`, :mod:`promptloop_env.toy.compose_prompts`); register your own with
``PROMPT_SETS.register("my-set", ["a query", ...])`` (or a function returning a
:class:`~promptloop_env.prompts.sets.PromptSet`, to carry metadata and categories)."""
PROMPT_SETS.register("simple-animals", SIMPLE_ANIMALS)
for _name in DATA_SETS:
    PROMPT_SETS.register(_name, lambda name=_name: load_data_set(name))


@PROMPT_SETS.register("geneval-train")
def _geneval_train() -> PromptSet:
    from promptloop_env.prompts.geneval_train import geneval_train_set  # imports GenEval's grammar on use

    return geneval_train_set()


def load_prompts(spec: str | Path, max_queries: int = 0, seed: int = 0) -> PromptSet:
    """A prompt set by name or file path, optionally drawn down to ``max_queries`` across its categories.

    A path that exists wins over a name. Logs (INFO) the set's size and categories.

    Raises:
        ValueError: neither a file nor a known name (the message lists the names).
    """
    path = Path(spec)
    if path.is_file():
        prompt_set = read_prompt_file(path)
    else:
        name = str(spec)
        if name not in PROMPT_SETS and (path.suffix or "/" in name):
            names = ", ".join(sorted(PROMPT_SETS))
            raise ValueError(f"No prompt file {name!r}, and no prompt set of that name. Valid names: {names}.")
        entry = PROMPT_SETS[name]
        queries = entry() if callable(entry) else entry
        prompt_set = queries if isinstance(queries, PromptSet) else PromptSet(name, tuple(queries))
    logger.info("%s", prompt_set.describe())
    drawn = prompt_set.draw(max_queries, seed)
    if len(drawn) < len(prompt_set):
        logger.info("drew %d of them (seed %d): %s", len(drawn), seed, drawn.describe())
    return drawn


def resolve_prompts(prompts: Sequence[str] | str | None, default: str | None) -> tuple[str, ...]:
    """The env's queries: a list as given, a set by name, a prompt file's path, or the backbone's default set.

    Backbones without a set of their own use ``simple-animals``.
    """
    if prompts is None:
        prompts = default or "simple-animals"
    if isinstance(prompts, (str, Path)):
        return tuple(load_prompts(prompts))
    queries = tuple(prompts)
    bad = [q for q in queries if not isinstance(q, str)]
    if bad:
        raise TypeError(f"prompts must be strings; got {type(bad[0]).__name__}: {bad[0]!r}.")
    if not queries:
        raise ValueError("prompts is empty: give at least one query, a set name, or None.")
    return queries


__all__ = [
    "DATA_SETS",
    "PROMPT_SETS",
    "SIMPLE_ANIMALS",
    "PromptSet",
    "index_metadata",
    "load_data_set",
    "load_prompts",
    "metadata_for",
    "read_prompt_file",
    "resolve_prompts",
]

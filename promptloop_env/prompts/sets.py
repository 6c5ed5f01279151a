"""Prompt sets with metadata: the shipped data sets, users' files, a stratified draw, a metadata index.

A :class:`PromptSet` is a sequence of query strings (it goes wherever a list of queries does) that also carries
each prompt's metadata (a dict: GenEval's ``tag`` / ``include`` / ``exclude``, PartiPrompts' ``category`` and
``challenge``, DrawBench's ``category``), its name, source and licence. The shipped sets live in ``data/`` beside
this module, with their provenance in ``data/PROVENANCE.md``; :data:`DATA_SETS` names them. A user's file is read
by :func:`read_prompt_file`: ``.txt`` (one prompt a line), ``.jsonl`` (an object a line with a ``prompt`` field;
the other fields are its metadata), ``.csv`` / ``.tsv`` (a header with a ``prompt`` column), each optionally
gzipped (``.gz``). Every set loaded records its prompts' metadata in one index (:func:`metadata_for`), so a reward
that needs it (``geneval``) finds a prompt's metadata by its text.

>>> geneval = load_data_set("geneval")
>>> len(geneval), geneval.category_counts()["position"], geneval.metadata[0]["include"]
(553, 100, [{'class': 'bench', 'count': 1}])
>>> small = geneval.draw(12, seed=0)
>>> sorted(small.category_counts().items())  # every category, in proportion
[('color_attr', 2), ('colors', 2), ('counting', 2), ('position', 2), ('single_object', 2), ('two_object', 2)]
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

DATA_DIR = Path(__file__).parent / "data"
CATEGORY_KEYS = ("category", "tag")
"""Metadata fields read as a prompt's category, first found wins (GenEval calls it ``tag``)."""
PROMPT_KEYS = ("prompt", "Prompt", "prompts", "text", "caption")
"""Column or field names read as the prompt, first found wins."""


@dataclass(frozen=True)
class DataSet:
    """A prompt set shipped as a data file: its file under ``data/``, what it is, its source and licence."""

    file: str
    description: str
    source: str
    licence: str


DATA_SETS: dict[str, DataSet] = {
    "geneval": DataSet(
        "geneval.jsonl",
        "GenEval's 553 prompts with their metadata (tag, classes, counts, colours, positions), six categories",
        "djghosh13/geneval prompts/evaluation_metadata.jsonl",
        "MIT",
    ),
    "pickapic-train": DataSet(
        "pickapic-train.txt.gz",
        "Pick-a-Pic prompts (unique captions of at least six words), Flow-GRPO's PickScore training list",
        "yifan123/flow_grpo dataset/pickscore/train.txt",
        "MIT (Flow-GRPO); the Pick-a-Pic dataset's own licence is not stated in its sources",
    ),
    "pickapic-test": DataSet(
        "pickapic-test.txt.gz",
        "Pick-a-Pic prompts, Flow-GRPO's PickScore test list (2,048, disjoint from the training list)",
        "yifan123/flow_grpo dataset/pickscore/test.txt",
        "MIT (Flow-GRPO); the Pick-a-Pic dataset's own licence is not stated in its sources",
    ),
    "parti": DataSet(
        "parti.jsonl",
        "PartiPrompts (P2): 1,632 prompts with category, challenge and note",
        "google-research/parti PartiPrompts.tsv",
        "Apache-2.0",
    ),
    "drawbench": DataSet(
        "drawbench.jsonl",
        "DrawBench (Imagen): 200 prompts in 11 categories",
        "Imagen's DrawBench sheet, as copied in kennymckormick/DrawBench-Glance imagen.csv",
        "not stated by the sheet; 183 of the 200 are published by Google under Apache-2.0 (see PROVENANCE.md)",
    ),
}
"""The shipped prompt sets, by name (sizes and licences: ``data/PROVENANCE.md``)."""


@dataclass(frozen=True)
class PromptSet(Sequence[str]):
    """Queries with their metadata: a sequence of ``str`` (what ``prompts=`` takes) plus, per prompt, a dict.

    Args:
        name: the set's name, or the file it was read from.
        prompts: the query texts.
        metadata: one dict per prompt (empty when the set has none).
        source, licence: where it comes from (for the shipped sets).
    """

    name: str
    prompts: tuple[str, ...]
    metadata: tuple[Mapping[str, Any], ...] = ()
    source: str = ""
    licence: str = ""
    _categories: tuple[str | None, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.metadata:
            object.__setattr__(self, "metadata", tuple({} for _ in self.prompts))
        if len(self.metadata) != len(self.prompts):
            raise ValueError(f"{self.name}: {len(self.prompts)} prompts but {len(self.metadata)} metadata entries.")
        categories = tuple(next((str(m[k]) for k in CATEGORY_KEYS if m.get(k)), None) for m in self.metadata)
        object.__setattr__(self, "_categories", categories)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> PromptSet: ...

    def __getitem__(self, index: int | slice) -> str | PromptSet:
        if isinstance(index, slice):
            return self.subset(range(len(self))[index])
        return self.prompts[index]

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.prompts)

    @property
    def categories(self) -> tuple[str | None, ...]:
        """Each prompt's category (its metadata's ``category`` or ``tag``), None where it has none."""
        return self._categories

    def category_counts(self) -> dict[str, int]:
        """How many prompts each category holds, in order of first appearance (empty for a set without any)."""
        counts: dict[str, int] = {}
        for c in self.categories:
            if c is not None:
                counts[c] = counts.get(c, 0) + 1
        return counts

    def describe(self) -> str:
        """One line: name, size and categories, e.g. ``geneval: 553 prompts, 6 categories (position 100, ...)``."""
        counts = self.category_counts()
        text = f"{self.name}: {len(self)} prompts"
        if counts:
            text += f", {len(counts)} categories (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"
        return text

    def subset(self, indices: Sequence[int]) -> PromptSet:
        """The prompts at ``indices``, with their metadata."""
        return PromptSet(
            self.name,
            tuple(self.prompts[i] for i in indices),
            tuple(self.metadata[i] for i in indices),
            self.source,
            self.licence,
        )

    def draw(self, max_queries: int, seed: int = 0) -> PromptSet:
        """At most ``max_queries`` prompts, drawn with ``seed`` across the categories, in the set's order.

        Each category gets its share in proportion to its size (largest remainders first, at least one each
        when ``max_queries`` allows); a set without categories keeps its first ``max_queries`` (shuffled sets such
        as Pick-a-Pic's are in random order already). ``max_queries`` of 0 (or more than the set holds) keeps all.
        """
        if max_queries < 0:
            raise ValueError(f"max_queries must be >= 0; got {max_queries}.")
        if max_queries == 0 or max_queries >= len(self):
            return self
        if not any(self.categories):
            return self.subset(range(max_queries))
        rng = random.Random(seed)
        groups: dict[str | None, list[int]] = {}
        for i, c in enumerate(self.categories):
            groups.setdefault(c, []).append(i)
        quotas = _proportional_quotas({c: len(v) for c, v in groups.items()}, max_queries, rng)
        chosen = [i for c, members in groups.items() for i in rng.sample(members, quotas[c])]
        return self.subset(sorted(chosen))


def _proportional_quotas(sizes: dict[Any, int], total: int, rng: random.Random) -> dict[Any, int]:
    """Split ``total`` across groups in proportion to ``sizes`` (largest remainder, ties in a seeded order)."""
    n = sum(sizes.values())
    exact = {c: total * s / n for c, s in sizes.items()}
    quotas = {c: int(v) for c, v in exact.items()}
    if total >= len(sizes):  # every category is represented
        for c in quotas:
            quotas[c] = max(quotas[c], 1)
    order = list(sizes)
    rng.shuffle(order)
    while sum(quotas.values()) > total:  # the minimum of one overshot: take from the largest
        c = max(order, key=lambda c: (quotas[c], -order.index(c)))
        quotas[c] -= 1
    for c in sorted(order, key=lambda c: -(exact[c] - int(exact[c])))[: max(total - sum(quotas.values()), 0)]:
        quotas[c] += 1
    return {c: min(q, sizes[c]) for c, q in quotas.items()}


# -- reading files ------------------------------------------------------------------------------------------------
def _open_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8-sig")


def _plain_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_prompt_file(path: str | Path, name: str | None = None, source: str = "", licence: str = "") -> PromptSet:
    """Read a prompt file: ``.txt``, ``.jsonl``, ``.csv`` or ``.tsv``, optionally ``.gz`` (see the module doc).

    Prompts are stripped of surrounding whitespace; blank ones are skipped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown extension, a malformed line or row (the message names the line), no prompts.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No prompt file {str(path)!r}.")
    kind = _plain_suffix(path)
    text = _open_text(path)
    prompts: list[str] = []
    metadata: list[dict[str, Any]] = []
    if kind == ".txt":
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
    elif kind == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON object ({err}).") from err
            prompt = record.get("prompt") if isinstance(record, dict) else None
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(f'{path}:{number}: each line needs a non-empty "prompt" string; got {line[:80]!r}.')
            prompts.append(prompt.strip())
            metadata.append({**record, "prompt": prompt.strip()})
    elif kind in (".csv", ".tsv"):
        rows = list(csv.DictReader(io.StringIO(text), delimiter="\t" if kind == ".tsv" else ","))
        column = next((k for k in PROMPT_KEYS if rows and k in rows[0]), None)
        if column is None:
            raise ValueError(f"{path}: the header needs a prompt column (one of {', '.join(PROMPT_KEYS)}).")
        for row in rows:
            prompt = (row.get(column) or "").strip()
            if prompt:
                prompts.append(prompt)
                fields = {k.lower(): (v or "").strip() for k, v in row.items() if k != column}
                metadata.append({**fields, "prompt": prompt})
    else:
        raise ValueError(f"{path}: prompt files are .txt, .jsonl, .csv or .tsv (optionally .gz); got {kind!r}.")
    if not prompts:
        raise ValueError(f"{path} holds no prompts.")
    prompt_set = PromptSet(name or str(path), tuple(prompts), tuple(metadata), source or str(path), licence)
    index_metadata(prompt_set)
    return prompt_set


@functools.cache
def load_data_set(name: str) -> PromptSet:
    """A shipped set by name (:data:`DATA_SETS`), read once per process.

    Raises:
        ValueError: not a shipped set's name.
    """
    if name not in DATA_SETS:
        raise ValueError(f"Unknown data prompt set {name!r}. Valid names: {', '.join(sorted(DATA_SETS))}.")
    entry = DATA_SETS[name]
    return read_prompt_file(DATA_DIR / entry.file, name, entry.source, entry.licence)


# -- the metadata index ------------------------------------------------------------------------------------------
_METADATA: dict[str, Mapping[str, Any]] = {}


def index_metadata(prompt_set: PromptSet) -> None:
    """Record the metadata of ``prompt_set``'s prompts by text (a later set's entry replaces an earlier one)."""
    for prompt, meta in zip(prompt_set.prompts, prompt_set.metadata, strict=True):
        if len(meta) > 1 or (meta and "prompt" not in meta):
            _METADATA[prompt] = meta


def metadata_for(prompt: str) -> Mapping[str, Any] | None:
    """The metadata of ``prompt`` from any set loaded so far in this process, or None."""
    return _METADATA.get(prompt) or _METADATA.get(prompt.strip())

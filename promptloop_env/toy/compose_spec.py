"""What a ``toy-compose`` text asks for, and whether an image gives it: the parser and GenEval's rules.

:func:`parse` reads any text made of the world's words (caption template or users' wordings) into a
:class:`~promptloop_env.toy.compose.Query`; :func:`constraints` lists what the query requires, each checked
exactly on an analysed image (:mod:`promptloop_env.toy.compose_analyser`):

- a group of one (``a circle``, ``a red circle``): at least one such object; with a colour, two checks (the
  shape is there; one of them has the colour), so the soft score credits the shape alone;
- a group of two to four (``three triangles``): exactly that many (GenEval's counting rule);
- a relation: some object of the first group stands in it to some object of the second;
- a background: the image's background.

The query becomes GenEval's metadata (:func:`spec_of`) and the analyser's objects are scored by GenEval's rules
in :mod:`promptloop_env.geneval_rules`, the module the ``geneval`` reward scores real images with; the exact
analyser has no confidences, so a group is met when any of its objects meet it (``pick="any"``). GenEval's rule
gives the strict score (:func:`strict_score`, 1.0 only if all hold); the soft score (:func:`soft_score`) is the
fraction that hold.

>>> q = parse("a red circle to the left of a blue square, teal background")
>>> q.category, [c.name for c in constraints(q)]
('position', ['circle', 'red circle', 'square', 'blue square', 'red circle left of blue square', 'teal background'])
"""

from __future__ import annotations

import re

from promptloop_env import geneval_rules
from promptloop_env.geneval_rules import Constraint, Exclusion, Requirement, Spec
from promptloop_env.toy.compose import Group, Query
from promptloop_env.toy.compose_analyser import ComposeAnalysis, analyse
from promptloop_env.toy.world import BACKGROUNDS, COLOURS, SHAPES

_COUNTS = {"a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "1": 1, "2": 2, "3": 3, "4": 4}
_PLURALS = {s + "s": s for s in SHAPES}
_RELATION_WORDS = {"left": "left of", "right": "right of", "above": "above", "over": "above", "below": "below",
                   "under": "below", "beneath": "below"}  # fmt: skip
_ALIASES = {"grey": "gray"}


def _words(text: str) -> list[str]:
    return [_ALIASES.get(w, w) for w in re.findall(r"[a-z]+|[0-9]", text.lower())]


def parse(text: str) -> Query:
    """The :class:`Query` that ``text`` asks for (any wording of the world's words; unknown words are skipped).

    Objects are read as ``[count] [colour] shape``; the first two become the groups (more are ignored); a
    relation word between them (``left``, ``right``, ``above``, ``below``) makes a position query; a
    background word followed by ``background`` is the background. A text with no shape word is a
    ``single_object`` query with no group (every constraint list is then empty and the strict score 1.0 when
    an object is found).

    >>> parse("Three RED triangles").groups
    (Group(shape='triangle', count=3, colour='red'),)
    >>> parse("a photo of a square, with a circle on its left").relation is None
    True
    """
    words = _words(text)
    groups: list[Group] = []
    relation, background = None, None
    count, colour = 1, None
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word in BACKGROUNDS and nxt in ("background", "backdrop"):
            background = background or word
        elif word in _COUNTS:
            count = _COUNTS[word]
        elif word in COLOURS:
            colour = word
        elif word in SHAPES or word in _PLURALS:
            if len(groups) < 2:
                groups.append(Group(_PLURALS.get(word, word), count, colour))
            count, colour = 1, None
        elif (
            word in _RELATION_WORDS
            and len(groups) == 1
            and relation is None
            and (nxt == "of" or "left" != word != "right")
        ):
            relation = _RELATION_WORDS[word]
    if relation is not None and len(groups) < 2:
        relation = None
    if relation:
        category = "position"
    elif len(groups) <= 1:
        g = groups[0] if groups else None
        category = "counting" if g and g.count > 1 else ("colors" if g and g.colour else "single_object")
    else:
        category = "color_attr" if any(g.colour for g in groups) else "two_object"
    return Query(category, tuple(groups), relation, background)


def spec_of(query: Query) -> Spec:
    """The shared rules' :class:`~promptloop_env.geneval_rules.Spec` of ``query`` (GenEval's metadata form).

    A group of one is an ``include`` of one; a group of two to four an ``include`` with its ``exclude`` of one
    more, of its colour (exactly that many); a relation puts the first group in it to the second.

    >>> spec_of(parse("two red triangles, teal background")).to_metadata()["exclude"]
    [{'class': 'triangle', 'count': 3, 'color': 'red'}]
    """
    include, exclude = [], []
    for i, g in enumerate(query.groups):
        relation = query.relation if (query.relation and i == 0) else None
        include.append(Requirement(g.shape, g.count, g.colour, relation, 1 if relation else None))
        if g.count > 1:
            exclude.append(Exclusion(g.shape, g.count + 1, g.colour))
    return Spec(query.category, tuple(include), tuple(exclude), query.background)


def constraints(query: Query) -> list[Constraint]:
    """What ``query`` requires, in order (see the module doc)."""
    return geneval_rules.constraints(spec_of(query))


def check(analysis: ComposeAnalysis, query: Query | str) -> dict[str, bool]:
    """Each constraint's name and whether ``analysis`` satisfies it (GenEval's rules on the analyser's objects)."""
    query = parse(query) if isinstance(query, str) else query
    return geneval_rules.check(analysis.records(), spec_of(query), pick="any", background=analysis.background)


def soft_score(analysis: ComposeAnalysis, query: Query | str) -> float:
    """The fraction of the query's constraints that hold (1.0 for a query with none, if an object is found)."""
    return geneval_rules.soft_score(check(analysis, query), bool(analysis.objects))


def strict_score(analysis: ComposeAnalysis, query: Query | str) -> float:
    """GenEval's rule: 1.0 if every constraint holds, else 0.0."""
    return geneval_rules.strict_score(check(analysis, query), bool(analysis.objects))


def evaluate_pipeline(pipe, num_queries: int, guidance: float, steps: int, seed: int, seeds: int = 2) -> dict:
    """Strict and soft scores of a pipeline on the first ``num_queries`` of ``toy-compose-test`` (for the trainer)."""
    import numpy as np
    import torch

    from promptloop_env.toy.compose_prompts import TOY_COMPOSE_TEST_QUERIES

    queries = list(TOY_COMPOSE_TEST_QUERIES[:num_queries]) * seeds
    images = []
    for i in range(0, len(queries), 128):
        out = pipe(
            queries[i : i + 128],
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator("cpu").manual_seed(seed + i),
            output_type="np",
        )
        images.append((out.images * 255).round().astype(np.uint8))
    analyses = [analyse(image) for image in np.concatenate(images)]
    strict = [strict_score(a, q) for a, q in zip(analyses, queries, strict=True)]
    soft = [soft_score(a, q) for a, q in zip(analyses, queries, strict=True)]
    by_category: dict[str, list[float]] = {}
    for q, s in zip(queries, strict, strict=True):
        by_category.setdefault(parse(q).category, []).append(s)
    return dict(
        guidance=guidance,
        strict=round(float(np.mean(strict)), 4),
        soft=round(float(np.mean(soft)), 4),
        by_category={k: round(float(np.mean(v)), 4) for k, v in by_category.items()},
        n=len(queries),
    )

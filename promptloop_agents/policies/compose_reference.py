"""Rule-based agents of the ``toy-compose`` world: the family of static rewrites and the oracle closed loop.

Both read queries with the world's parser (:func:`promptloop_env.toy.compose_spec.parse`); the oracle also
reads every preview with the world's exact analyser, privileged information no learned policy gets. They are
the reference points of the headroom measurement (``benchmarks/toy_compose_headroom.py``): a closed-loop policy
is worth training only if the oracle beats the best static rewrite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from promptloop_agents.policies.processing import stretch_contrast
from promptloop_agents.policies.protocol import Observation
from promptloop_env.toy.compose import Query, caption, group_text
from promptloop_env.toy.compose_analyser import ComposeAnalysis, analyse
from promptloop_env.toy.compose_spec import check, parse, soft_score, strict_score

SELECT_SEED0 = 500_000
"""First seed of the best static rewrite's selection episodes (far from the test seeds of the benchmarks)."""
STRETCH_TARGET = 160.0  # RGB distance the strongest deviation from the background is scaled to
_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _with_counts(query: Query, delta: int, only: int | None = None) -> Query:
    groups = tuple(
        replace(g, count=min(4, max(1, g.count + delta))) if only in (None, i) else g
        for i, g in enumerate(query.groups)
    )
    return replace(query, groups=groups)


def swapped(query: Query) -> Query:
    """The same request with its two groups in the other order (and the relation inverted)."""
    if len(query.groups) != 2:
        return query
    relation = _INVERSE[query.relation] if query.relation else None
    return replace(query, groups=query.groups[::-1], relation=relation)


def restated(query: Query) -> str:
    """The caption followed by each object again: ``a red circle and a square, a red circle, a square``."""
    return caption(query) + ", " + ", ".join(group_text(g) for g in query.groups)


REWRITES: dict[str, Callable[[Query], str]] = {
    "caption": caption,
    "swap": lambda q: caption(swapped(q)),
    "twice": lambda q: caption(q) + ", " + caption(q),
    "restate": restated,
    "count_up": lambda q: caption(_with_counts(q, +1)),
    "count_down": lambda q: caption(_with_counts(q, -1)),
    "swap_count_up": lambda q: caption(_with_counts(swapped(q), +1)),
    "background_first": lambda q: (
        (f"{q.background} background, " if q.background else "") + caption(replace(q, background=None))
    ),
}
"""Name -> rewrite of a parsed query. The family the best static rewrite is chosen from, per query."""


def rewrite_family(query: str) -> dict[str, str]:
    """Each distinct rewrite of ``query`` by :data:`REWRITES` (the first name wins for equal texts), plus the
    query itself as ``identity``."""
    parsed = parse(query)
    out: dict[str, str] = {"identity": query}
    seen = {query}
    for name, rewrite in REWRITES.items():
        text = rewrite(parsed)
        if text not in seen:
            out[name] = text
            seen.add(text)
    return out


def compose_scores(finals: Sequence[np.ndarray], queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strict (GenEval's all-or-nothing rule) and soft score of each final image against its query."""
    analyses = [analyse(image) for image in finals]
    strict = np.array([strict_score(a, q) for a, q in zip(analyses, queries, strict=True)], dtype=np.float64)
    soft = np.array([soft_score(a, q) for a, q in zip(analyses, queries, strict=True)], dtype=np.float64)
    return strict, soft


def fork_outcomes(
    core, episodes: Sequence, candidates: Sequence[dict[str, str]]
) -> list[dict[str, tuple[float, float]]]:
    """Copy each episode once per candidate prompt of its own and run all copies to the end in one batch.

    ``core`` is a :class:`~promptloop_env.core.PromptLoopCore` (one without previews is cheaper: the copies need
    none), ``episodes`` its running episodes, ``candidates[i]`` the ``{name: prompt}`` to try on episode ``i``; the
    episodes themselves are left untouched. Returns, per episode, ``{name: (strict, soft)}`` of its candidates'
    final images.
    """
    import copy

    jobs = [(i, name, prompt) for i, c in enumerate(candidates) for name, prompt in c.items()]
    copies = [copy.deepcopy(episodes[i]) for i, _, _ in jobs]
    while not copies[0].terminated:
        core.advance(copies, [prompt for _, _, prompt in jobs])
    strict, soft = compose_scores([c.final_image for c in copies], [c.query for c in copies])
    out: list[dict[str, tuple[float, float]]] = [{} for _ in episodes]
    for (i, name, _), a, b in zip(jobs, strict, soft, strict=True):
        out[i][name] = (float(a), float(b))
    return out


FinalImages = Callable[[list[str], list[str], list[int]], Sequence[np.ndarray]]
"""``(queries, prompts, seeds) -> final images``: one open-loop episode per entry, ``prompts[i]`` for the whole
trajectory of episode ``i`` (how the seed becomes the noise is the caller's: a noise seed or an env seed)."""


def select_best_static(
    queries: Sequence[str], rollout: FinalImages, select_seeds: int = 4, seed0: int = SELECT_SEED0
) -> list[tuple[str, str]]:
    """The best static rewrite of each query: ``(rewrite name, prompt)`` of :func:`rewrite_family`.

    Every candidate of every query runs open loop on the same ``select_seeds`` selection seeds (query ``i``,
    selection seed ``j``: seed ``seed0 + 1000 j + i``, so the candidates of a query meet the same noise), which
    must differ from the seeds the choice is then evaluated on. The candidate with the highest mean strict score
    wins (the soft score, weighted 0.01, breaks ties; then the first candidate, the query itself before any
    rewrite).

    Args:
        queries: the queries (toy-compose wording).
        rollout: runs the selection episodes (see :data:`FinalImages`).
        select_seeds: selection episodes per candidate.
        seed0: first selection seed.
    """
    if select_seeds < 1:
        raise ValueError(f"select_seeds must be >= 1; got {select_seeds}.")
    cands = [(i, name, text) for i, q in enumerate(queries) for name, text in rewrite_family(q).items()]
    sel_q = [queries[i] for _ in range(select_seeds) for i, _, _ in cands]
    sel_prompts = [text for _ in range(select_seeds) for _, _, text in cands]
    sel_seeds = [seed0 + 1000 * j + i for j in range(select_seeds) for i, _, _ in cands]
    strict, soft = compose_scores(rollout(sel_q, sel_prompts, sel_seeds), sel_q)
    value = (strict + 0.01 * soft).reshape(select_seeds, len(cands)).mean(axis=0)
    best: list[tuple[str, str]] = []
    for i in range(len(queries)):
        mine = [c for c in range(len(cands)) if cands[c][0] == i]
        top = max(mine, key=lambda c: value[c])
        best.append((cands[top][1], cands[top][2]))
    return best


def caption_rewrite(query: str) -> str:
    """The query rewritten once into the world's caption template (what the toy model was trained on).

    >>> caption_rewrite("three RED triangles")
    'three red triangles'
    """
    return caption(parse(query))


def read_preview(preview: np.ndarray) -> ComposeAnalysis:
    """The analyser on a preview with its contrast stretched: early x0 estimates are washed-out means in which
    objects are faint, so deviations from the background are scaled up to full contrast before reading."""
    return analyse(stretch_contrast(preview, STRETCH_TARGET))


def oracle_prompt(query: Query, preview: np.ndarray, current: str | None = None) -> str:
    """The oracle's next prompt for ``query`` given the current preview (uint8 image): rules on what it reads.

    - a counted group with too few objects: ask for one more than wanted per missing object (overshoot);
      too many: ask for fewer;
    - a wanted object that is missing: name it first and ask for two of it;
    - a wanted colour that is missing on a present shape: name that group first, twice;
    - a relation that does not hold (both objects present): restate it from the other side;
    - an empty preview (early x0 estimates show no object yet) or nothing wrong: the prompt in force
      (``current``; the caption of the query if None), to stay on course.
    """
    seen = read_preview(preview)
    if not seen.objects:  # an early preview is the washed-out mean image: nothing to go on yet
        return current if current is not None else caption(query)
    groups = list(query.groups)
    for i, g in enumerate(groups):
        n = seen.count(g.shape, g.colour)
        if g.count > 1 and n != g.count:
            fixed = replace(g, count=min(4, max(1, g.count + (g.count - n))))
            return caption(replace(query, groups=tuple(fixed if j == i else h for j, h in enumerate(groups))))
        if g.count == 1 and seen.count(g.shape) == 0:
            others = [h for j, h in enumerate(groups) if j != i]
            return caption(replace(query, groups=(replace(g, count=2), *others), relation=None))
        if g.count == 1 and g.colour and n == 0:
            others = [h for j, h in enumerate(groups) if j != i]
            return ", ".join([group_text(g), caption(replace(query, groups=(g, *others), relation=None))])
    if query.relation and not all(check(seen, query).values()):
        return caption(swapped(query))
    return current if current is not None else caption(query)


class ComposeOracleAgent:
    """The oracle closed loop: :func:`oracle_prompt` on every preview after the first action.

    Args:
        first: ``query -> prompt`` for the first action, made before any preview exists (default: the caption
            template; the headroom benchmark passes the best static rewrite so the loop starts where the
            strongest open-loop baseline stands).
        min_timestep: the prompt in force is kept at refinement points before this fraction of the denoising,
            where the toy model's x0 estimate shows no object yet (objects appear between 40% and 55%).
    """

    def __init__(self, first: Callable[[str], str] | None = None, min_timestep: float = 0.35) -> None:
        self.first = first or caption_rewrite
        self.min_timestep = min_timestep

    def reset(self, seed: int | None = None) -> None:
        """Stateless: every decision is made from the observation."""

    def act(self, observation: Observation) -> str:
        query = str(observation["query"])
        if int(observation["segment"]) == 0:
            return self.first(query)
        if float(np.asarray(observation["timestep"]).reshape(-1)[0]) < self.min_timestep:
            return str(observation["prompt"])  # too early: the x0 estimate is still the washed-out mean image
        return oracle_prompt(parse(query), observation["image"], str(observation["prompt"]))

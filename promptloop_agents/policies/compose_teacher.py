"""Reference agents of the ``toy-compose`` world built on a per-category choice: the best one-shot rewrite and the
exact-reader corrective teacher.

1. **The best one-shot rewrite a policy can know** (:class:`CategoryRewriteAgent`): per GenEval category, one
   rewrite of :data:`~.compose_reference.REWRITES` (chosen on *training* queries), applied for the whole
   trajectory. The shipped toy-compose policy carries its choice in ``selection.json`` (:func:`load_selection`).
2. **The teacher** (:class:`ComposeTeacher`): that rewrite first, then per category a rule set of
   :data:`TEACHER_RULES` on the previews, read with the world's exact analyser (privileged: no learned policy
   gets it). :func:`corrective_prompt` is the rule set that edits the prompt in force by the error the preview
   shows.

``promptloop eval --agents one-shot,teacher,teacher:corrective`` builds them from the shipped policy's files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from promptloop_agents.policies.compose_reference import REWRITES, oracle_prompt, read_preview, swapped
from promptloop_agents.policies.protocol import Observation
from promptloop_env.toy.compose import CATEGORIES, Query, caption

SELECTION_FILE = "selection.json"
"""File beside a toy-compose policy that holds its per-category one-shot rewrite (category -> rewrite name)."""


def apply_rewrite(name: str, query: str) -> str:
    """``query`` rewritten by the rewrite ``name`` of :data:`REWRITES` (``identity`` leaves it as it is).

    >>> apply_rewrite("count_up", "a circle and a square")
    'two circles and two squares'
    """
    from promptloop_env.toy.compose_spec import parse

    return query if name == "identity" else REWRITES[name](parse(query))


class CategoryRewriteAgent:
    """The best one-shot rewrite a policy can know: its category's rewrite, used for the whole trajectory.

    Args:
        choice: category -> rewrite name (``identity`` or a key of :data:`REWRITES`), chosen on training queries
            (e.g. :func:`load_selection` of the shipped toy-compose policy).
    """

    uses_previews = False

    def __init__(self, choice: dict[str, str]) -> None:
        self.choice = dict(choice)

    def rewrite(self, query: str) -> str:
        """The prompt for ``query``: its category's rewrite (the query itself for a category not chosen)."""
        from promptloop_env.toy.compose_spec import parse

        return apply_rewrite(self.choice.get(parse(query).category, "identity"), query)

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, observation: Observation) -> str:
        """The category's rewrite of the observation's query, at every refinement."""
        return self.rewrite(str(observation["query"]))


def corrective_prompt(query: Query, preview: np.ndarray, current: str) -> str:
    """Correct the prompt in force from what the preview shows, relative to that prompt (rules on the analyser).

    Where :func:`~.compose_reference.oracle_prompt` rewrites from the query, this keeps the prompt
    in force (e.g. the counts a ``count_up`` rewrite raised) and changes only what the preview shows wrong:

    - a counted group (two or more wanted) with the wrong number: its count moves by the error;
    - a wanted single object (shape, and colour when named) that is missing: its count goes up by one;
    - both present but the relation wrong: the request is restated from the other side.
    """
    from promptloop_env.toy.compose_spec import check, parse

    seen = read_preview(preview)
    if not seen.objects:
        return current
    now = parse(current)
    if [(g.shape, g.colour) for g in now.groups] != [(g.shape, g.colour) for g in query.groups]:
        now = query  # the prompt in force names other objects: start again from the query
    groups, changed = list(now.groups), False
    for i, wanted in enumerate(query.groups):
        n = seen.count(wanted.shape, wanted.colour)
        if wanted.count > 1 and n != wanted.count:
            groups[i] = replace(groups[i], count=min(4, max(1, groups[i].count + wanted.count - n)))
            changed = True
        elif wanted.count == 1 and n == 0:
            groups[i] = replace(groups[i], count=min(4, groups[i].count + 1))
            changed = True
    fixed = replace(now, groups=tuple(groups), background=query.background)
    if changed:
        return caption(fixed)
    if query.relation and not all(check(seen, query).values()):
        return caption(swapped(fixed))
    return current


TEACHER_RULES: dict[str, Callable[[Query, np.ndarray, str], str] | None] = {
    "keep": None,
    "oracle": oracle_prompt,
    "corrective": corrective_prompt,
}
"""How the teacher acts on a preview, per category: keep the a-priori rewrite, or one of the rule sets."""


class ComposeTeacher:
    """The exact-reader teacher: the category's a-priori rewrite first, then per category a rule set on the
    previews from ``min_timestep`` on (``keep``: never change; ``oracle`` / ``corrective``: see above).

    Args:
        choice: category -> one-shot rewrite name (as for :class:`CategoryRewriteAgent`).
        rules: category -> a key of :data:`TEACHER_RULES` (``oracle`` for a category not named); the shipped
            policy's ``teacher_rules.json`` holds the per-category choice made on training queries.
        min_timestep: the prompt in force is kept at refinement points before this fraction of the denoising
            (early x0 estimates of the toy model show no object yet).
    """

    def __init__(self, choice: dict[str, str], rules: dict[str, str] | None = None, min_timestep: float = 0.35):
        self.first = CategoryRewriteAgent(choice)
        self.rules = {c: "oracle" for c in CATEGORIES} | (rules or {})
        unknown = sorted(set(self.rules.values()) - set(TEACHER_RULES))
        if unknown:
            raise ValueError(f"Unknown teacher rule(s) {unknown}; valid: {', '.join(TEACHER_RULES)}.")
        self.min_timestep = min_timestep

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, observation: Observation) -> str:
        """The one-shot rewrite at segment 0, then the category's rule on each preview (or the prompt in force)."""
        from promptloop_env.toy.compose_spec import parse

        query = parse(str(observation["query"]))
        if int(observation["segment"]) == 0:
            return self.first.rewrite(str(observation["query"]))
        rule = TEACHER_RULES[self.rules[query.category]]
        if rule is None or float(np.asarray(observation["timestep"]).reshape(-1)[0]) < self.min_timestep:
            return str(observation["prompt"])
        return rule(query, observation["image"], str(observation["prompt"]))

    def __call__(self, observation: Observation, rng: np.random.Generator | None = None) -> str:
        """The ``teacher(observation, rng) -> prompt`` form distillation collects examples with."""
        return self.act(observation)


def load_selection(folder: str | Path) -> dict[str, str]:
    """The per-category one-shot rewrite saved beside a toy-compose policy (``selection.json``)."""
    path = Path(folder) / SELECTION_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: the best one-shot rewrite is saved as {SELECTION_FILE} beside a distilled "
            "toy-compose policy, as in the shipped one (promptloop_agents.policies.toy_policy."
            "SHIPPED_TOY_COMPOSE_POLICY); pass such a policy folder (or its warm_start folder)."
        )
    return json.loads(path.read_text())

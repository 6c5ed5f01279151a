"""Choices of the toy-compose learner made on training queries: the per-category one-shot rewrite and the
teacher's per-category rule set, and the env settings the learner runs under.

:func:`select_category_rewrites` picks, per GenEval category, the rewrite of
:data:`~promptloop_agents.policies.compose_reference.REWRITES` with the best mean strict score on training queries
(the shipped policy's ``selection.json``); :func:`select_teacher_rules` then picks, on other training queries, the
rule set of :data:`~promptloop_agents.policies.compose_teacher.TEACHER_RULES` each category's teacher uses
(``teacher_rules.json``).

The toy-compose learner acts at steps 0, 9, 11, 13 and 15 of 20 (:data:`COMPOSE_SCHEDULE`): objects appear in the
x0 estimate between 45% and 55% of the denoising, so uniform points would spend three of five looks on blank
previews (``research/toy_compose/results/toy_compose_headroom_schedule_0-9-11-13-15.json`` against
``benchmarks/results/toy_compose_headroom.json``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from promptloop_agents.policies.compose_reference import REWRITES
from promptloop_agents.policies.compose_teacher import TEACHER_RULES, ComposeTeacher, apply_rewrite
from promptloop_env.toy.compose import CATEGORIES

COMPOSE_STEPS = 20
COMPOSE_SCHEDULE = (0, 9, 11, 13, 15)
SELECTION_SEED0 = 700_000  # noise seeds of the rewrite selection on training queries (tests use 0..)


def compose_env_kwargs(
    backbone: str = "toy-compose",
    reward: str = "toy-compose-soft",
    schedule: str | Sequence[int] = COMPOSE_SCHEDULE,
    **overrides: Any,
) -> dict[str, Any]:
    """``gym.make_vec`` keyword arguments of the toy-compose learner (20 steps, refinements at 0/9/11/13/15)."""
    kwargs = dict(backbone=backbone, reward=reward, num_inference_steps=COMPOSE_STEPS, num_refinements=5)
    kwargs.update(preview="vae", preview_size=64)
    kwargs["refine_schedule"] = list(schedule) if not isinstance(schedule, str) else schedule
    return {**kwargs, **overrides}


@dataclass(frozen=True)
class SelectionEpisodes:
    """The episodes a choice is made on: each of ``queries`` (training queries) on ``seeds_per_query`` noise seeds,
    the same for every candidate, played ``num_envs`` at a time on ``backbone``."""

    queries: Sequence[str]
    seeds_per_query: int = 2
    backbone: str = "toy-compose"
    num_envs: int = 64
    progress: bool = True

    @property
    def num_episodes(self) -> int:
        """Episodes each candidate plays."""
        return len(self.queries) * self.seeds_per_query

    def scores_per_category(
        self, acts: dict[str, Callable], seed0: int, desc: str, **env_overrides: Any
    ) -> dict[str, dict[str, float]]:
        """``{category: {name: mean strict}}``: each batched ``act`` of ``acts`` on the same episodes.

        Query ``i``'s noise seeds are ``seed0 + 1000 * s + i``; the env's reward is the strict score and its other
        settings those of :func:`compose_env_kwargs` with ``env_overrides``.
        """
        from tqdm.auto import tqdm

        from promptloop_agents.rollout import make_vector_env, run_episodes
        from promptloop_env.toy.compose_spec import parse

        queries, per_query = self.queries, self.seeds_per_query
        categories = np.array([parse(q).category for q in queries])
        episodes_q = [q for q in queries for _ in range(per_query)]
        seeds = [seed0 + 1000 * s + i for i in range(len(queries)) for s in range(per_query)]
        envs = make_vector_env(
            min(self.num_envs, self.num_episodes),
            **compose_env_kwargs(self.backbone, reward="toy-compose", **env_overrides),
        )
        scores: dict[str, dict[str, float]] = {c: {} for c in CATEGORIES if c in categories}
        for name, act in tqdm(acts.items(), desc=desc, disable=not self.progress, leave=False):
            done = run_episodes(envs, act, episodes_q, seeds)
            rewards = np.array([e.reward for e in done]).reshape(len(queries), per_query).mean(axis=1)
            for category in scores:
                scores[category][name] = float(rewards[categories == category].mean())
        envs.close()
        return scores


def select_category_rewrites(episodes: SelectionEpisodes) -> dict[str, Any]:
    """Per category, the rewrite (or ``identity``) with the best mean strict score on ``episodes``.

    Every candidate runs on the same noise seeds (``SELECTION_SEED0 + 1000 * s + i``), with the prompt fixed for
    the whole episode. Returns ``{"choice": {category: name}, "scores": {category: {name: mean}}, "episodes": n}``.
    """
    names = ["identity", *REWRITES]
    queries = set(episodes.queries)

    def fixed(name: str) -> Callable:
        prompts = {q: apply_rewrite(name, q) for q in queries}
        return lambda obs: [prompts[str(o["query"])] for o in obs]

    acts = {name: fixed(name) for name in names}
    scores = episodes.scores_per_category(
        acts, SELECTION_SEED0, "rewrite selection", schedule="uniform", preview="none"
    )
    choice = {c: max(s, key=lambda n, s=s: (s[n], n == "identity")) for c, s in scores.items()}
    return {"choice": choice, "scores": scores, "episodes": episodes.num_episodes * len(names)}


def select_teacher_rules(choice: dict[str, str], episodes: SelectionEpisodes) -> dict[str, Any]:
    """Per category, the rule set of :data:`TEACHER_RULES` whose teacher scores best (mean strict) on ``episodes``.

    Use training queries other than those the rewrites were selected on (the a-priori rewrite would otherwise
    carry its selection's luck); the noise seeds are ``SELECTION_SEED0 + 100_000 + 1000 * s + i``. Returns
    ``{"rules": {category: name}, "scores": {category: {name: mean}}, "episodes": n}``.
    """
    from promptloop_agents.evaluation.harness import agent_act_fn

    acts = {name: agent_act_fn(ComposeTeacher(choice, dict.fromkeys(CATEGORIES, name))) for name in TEACHER_RULES}
    scores = episodes.scores_per_category(acts, SELECTION_SEED0 + 100_000, "teacher rules")
    rules = {c: max(s, key=lambda n, s=s: (s[n], n == "keep")) for c, s in scores.items()}
    return {"rules": rules, "scores": scores, "episodes": episodes.num_episodes * len(TEACHER_RULES)}

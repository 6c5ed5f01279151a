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


def _scores_per_category(
    envs: Any,
    acts: dict[str, Callable],
    queries: Sequence[str],
    seeds_per_query: int,
    seeds: list[int],
    desc: str,
    progress: bool,
) -> dict[str, dict[str, float]]:
    """``{category: {name: mean strict}}``: each batched ``act`` on the same episodes (env reward: strict)."""
    from tqdm.auto import tqdm

    from promptloop_agents.rollout import run_episodes
    from promptloop_env.toy.compose_spec import parse

    categories = np.array([parse(q).category for q in queries])
    episodes_q = [q for q in queries for _ in range(seeds_per_query)]
    scores: dict[str, dict[str, float]] = {c: {} for c in CATEGORIES if c in categories}
    for name, act in tqdm(acts.items(), desc=desc, disable=not progress, leave=False):
        done = run_episodes(envs, act, episodes_q, seeds)
        rewards = np.array([e.reward for e in done]).reshape(len(queries), seeds_per_query).mean(axis=1)
        for category in scores:
            scores[category][name] = float(rewards[categories == category].mean())
    return scores


def select_category_rewrites(
    queries: Sequence[str],
    seeds_per_query: int = 2,
    backbone: str = "toy-compose",
    num_envs: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Per category, the rewrite (or ``identity``) with the best mean strict score on ``queries`` (training queries).

    Every candidate runs on the same noise seeds (``SELECTION_SEED0 + 1000 * s + i``). Returns
    ``{"choice": {category: name}, "scores": {category: {name: mean}}, "episodes": n}``.
    """
    from promptloop_agents.rollout import make_vector_env

    names = ["identity", *REWRITES]
    seeds = [SELECTION_SEED0 + 1000 * s + i for i in range(len(queries)) for s in range(seeds_per_query)]
    envs = make_vector_env(
        min(num_envs, len(queries) * seeds_per_query),
        **compose_env_kwargs(backbone, reward="toy-compose", schedule="uniform", preview="none"),
    )

    def fixed(name: str) -> Callable:
        prompts = {q: apply_rewrite(name, q) for q in set(queries)}
        return lambda obs: [prompts[str(o["query"])] for o in obs]

    acts = {name: fixed(name) for name in names}
    scores = _scores_per_category(envs, acts, queries, seeds_per_query, seeds, "rewrite selection", progress)
    envs.close()
    choice = {c: max(s, key=lambda n, s=s: (s[n], n == "identity")) for c, s in scores.items()}
    return {"choice": choice, "scores": scores, "episodes": len(seeds) * len(names)}


def select_teacher_rules(
    choice: dict[str, str],
    queries: Sequence[str],
    seeds_per_query: int = 2,
    backbone: str = "toy-compose",
    num_envs: int = 60,
    progress: bool = True,
) -> dict[str, Any]:
    """Per category, the rule set of :data:`TEACHER_RULES` whose teacher scores best (mean strict) on ``queries``.

    Use training queries other than those the rewrites were selected on (the a-priori rewrite would otherwise
    carry its selection's luck). Returns ``{"rules": {category: name}, "scores": {category: {name: mean}}}``.
    """

    from promptloop_agents.evaluation.harness import agent_act_fn
    from promptloop_agents.rollout import make_vector_env

    seeds = [SELECTION_SEED0 + 100_000 + 1000 * s + i for i in range(len(queries)) for s in range(seeds_per_query)]
    envs = make_vector_env(
        min(num_envs, len(queries) * seeds_per_query), **compose_env_kwargs(backbone, reward="toy-compose")
    )
    acts = {name: agent_act_fn(ComposeTeacher(choice, dict.fromkeys(CATEGORIES, name))) for name in TEACHER_RULES}
    scores = _scores_per_category(envs, acts, queries, seeds_per_query, seeds, "teacher rules", progress)
    envs.close()
    rules = {c: max(s, key=lambda n, s=s: (s[n], n == "keep")) for c, s in scores.items()}
    return {"rules": rules, "scores": scores, "episodes": len(seeds) * len(TEACHER_RULES)}

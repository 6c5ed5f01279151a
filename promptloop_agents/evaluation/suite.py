"""Evaluate agents on the same held-out episodes of one or more backbones and write the reports."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptloop_agents.configs import EnvConfig
from promptloop_agents.evaluation.eval_config import EvalConfig
from promptloop_agents.evaluation.harness import (
    EvalResult,
    draw_queries,
    episode_seeds,
    paired_difference,
    query_categories,
    run_agent,
    sample_episodes,
    uses_previews,
    write_report,
)
from promptloop_agents.rollout import make_vector_env, run_episodes


def run_evaluation(env: EnvConfig, config: EvalConfig, agents: dict[str, Any]) -> dict[str, EvalResult]:
    """Evaluate ready-made agents on ``env.backbone`` (the first, if several); writes what ``promptloop eval``
    writes and returns ``{agent: result}``."""
    backbone = env.backbone.split(",")[0]
    one = dataclasses.replace(env, backbone=backbone)
    return evaluate_backbones(one, config, lambda b, best_static: agents)[backbone]


def evaluate_backbones(
    env: EnvConfig, config: EvalConfig, agents_for: Callable[[str, Callable], dict[str, Any]], **extra: Any
) -> dict[str, dict[str, EvalResult]]:
    """Every agent of ``agents_for(backbone, best_static)`` on the same episodes of every backbone.

    Episode ``(query i, seed j)`` has the env seed :func:`~promptloop_agents.evaluation.harness.episode_seeds` gives
    (the same for every agent and backbone). Agents that ignore previews run on an env that decodes none (the
    final images are the same). Writes ``eval.json``, ``eval.md``, a sample grid per backbone and, for one
    backbone, the older ``metrics.json`` under ``config.output_dir``.
    """
    from tqdm.auto import tqdm

    from promptloop_agents.evaluation.agents import sampling_description
    from promptloop_env.rewards import make_reward

    started = time.perf_counter()
    queries, categories = eval_queries(config, env.backbone)
    n_seeds = config.seeds_per_query
    ep_queries = [q for q in queries for _ in range(n_seeds)]
    ep_seeds = episode_seeds(len(queries), n_seeds, config.seed).reshape(-1).tolist()
    metrics = {name: make_reward(name) for name in config.metrics.split(",") if name}
    if not metrics:
        raise ValueError("--metrics is empty: name at least one reward to score the final images with.")
    samples = sample_episodes(categories or [""] * len(queries), n_seeds, config.sample_queries)
    results: dict[str, dict[str, EvalResult]] = {}
    chosen: dict[str, dict[str, dict[str, str]]] = {}
    sampling: dict[str, str] = {}
    bar = tqdm(total=0, desc="promptloop eval", unit="episode", disable=not config.progress)
    try:  # the bar ends its line on errors too, so that the error is a line of its own
        for backbone in dict.fromkeys(b.strip() for b in env.backbone.split(",") if b.strip()):
            kwargs = dataclasses.replace(env, backbone=backbone).env_kwargs(
                config.refine_schedule, config.resolved_device()
            )
            envs: dict[bool, Any] = {}

            def envs_for(previews: bool, kwargs=kwargs, envs=envs) -> Any:
                if previews not in envs:
                    settings = kwargs if previews else {**kwargs, "preview": "none"}
                    envs[previews] = make_vector_env(min(config.num_envs, len(ep_queries)), **settings)
                return envs[previews]

            def best_static(backbone=backbone, envs_for=envs_for) -> dict[str, str]:
                if backbone not in chosen:
                    unique = list(dict.fromkeys(queries))  # a set may word several of its queries alike
                    chosen[backbone] = select_best_static(unique, envs_for(False), config, bar)
                return {q: c["prompt"] for q, c in chosen[backbone].items()}

            agents = agents_for(backbone, best_static)
            sampling.update({name: sampling_description(agent) for name, agent in agents.items()})
            bar.total += len(agents) * len(ep_queries)
            bar.refresh()
            results[backbone] = {
                name: run_agent(
                    name,
                    agent,
                    envs_for(uses_previews(agent)),
                    ep_queries,
                    ep_seeds,
                    metrics,
                    config.seed,
                    bar,
                    samples,
                )
                for name, agent in agents.items()
            }
            for vector_env in envs.values():
                vector_env.close()
    finally:
        bar.close()
    setup = {**dataclasses.asdict(env), **dataclasses.asdict(config), "queries": len(queries)}
    extra.update(sampling=sampling, seconds=round(time.perf_counter() - started, 1))
    write_report(Path(config.output_dir), results, setup, queries, categories, ep_seeds, samples, chosen, **extra)
    if len(results) == 1:
        write_metrics(Path(config.output_dir) / "metrics.json", next(iter(results.values())), config, env)
    return results


def eval_queries(config: EvalConfig, backbone: str) -> tuple[list[str], list[str] | None]:
    """The held-out queries of ``config`` and their categories (toy-compose's, or the set's own; else None): the
    whole set, or ``config.max_queries`` of them drawn across the categories (:func:`~.harness.draw_queries`, seeded by
    ``config.seed``), in the set's order."""
    from promptloop_env.prompts import load_prompts

    prompt_set = load_prompts(config.eval_prompts)
    queries = list(prompt_set)
    categories = query_categories(queries, config.eval_prompts, backbone)
    if categories is None and any(prompt_set.categories):  # a set with categories of its own (GenEval's tags)
        categories = [category or "" for category in prompt_set.categories]
    picks = draw_queries(queries, config.max_queries, config.seed, categories)
    return [queries[i] for i in picks], [categories[i] for i in picks] if categories is not None else None


def select_best_static(queries: list[str], envs: Any, config: EvalConfig, bar: Any) -> dict[str, dict[str, str]]:
    """``{query: {"rewrite", "prompt"}}``: :func:`~promptloop_agents.policies.compose_reference.select_best_static`
    with its selection episodes run open loop on ``envs`` (their seeds are env seeds, apart from the test
    episodes')."""
    from promptloop_agents.policies.compose_reference import select_best_static as select

    def rollout(sel_q: list[str], sel_prompts: list[str], sel_seeds: list[int]) -> list[Any]:
        bar.total += len(sel_q)
        finals, n = [], envs.num_envs
        for start in range(0, len(sel_q), n):
            prompts = sel_prompts[start : start + n]
            padded = prompts + [prompts[-1]] * (n - len(prompts))
            chunk = run_episodes(
                envs, lambda obs, p=padded: p, sel_q[start : start + n], sel_seeds[start : start + n], keep_images=True
            )
            finals += [e.final_image for e in chunk]
            bar.update(len(chunk))
        return finals

    picks = select(queries, rollout, config.select_seeds)
    return {q: {"rewrite": name, "prompt": prompt} for q, (name, prompt) in zip(queries, picks, strict=True)}


def write_metrics(path: Path, results: dict[str, EvalResult], config: EvalConfig, env: EnvConfig, **extra: Any):
    """``metrics.json`` (the older summary, kept for its readers): per agent, mean and t 95% CI over episodes of
    every metric; paired differences to identity."""
    payload: dict[str, Any] = {"agents": {name: r.summary() for name, r in results.items()}}
    if "identity" in results:
        payload["paired_vs_identity"] = {
            name: {m: paired_difference(r, results["identity"], m) for m in r.scores}
            for name, r in results.items()
            if name != "identity"
        }
    payload["episodes"] = len(next(iter(results.values())).episodes) if results else 0
    payload["eval"] = {"prompts": config.eval_prompts, "seeds_per_query": config.seeds_per_query, "seed": config.seed}
    payload["env"] = {**dataclasses.asdict(env), "refine_schedule": config.refine_schedule}
    payload.update(extra)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2))
    return payload

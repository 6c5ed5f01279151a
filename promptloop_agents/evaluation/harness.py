"""Evaluating agents on held-out queries: the same (query, seed) episodes for every agent, means with 95% CIs.

:func:`evaluate` runs agents on given episodes; :func:`run_agent` is its one-agent step with a progress bar.
The rest turns scores into the reports of ``promptloop eval``: :func:`summarise` (bootstrap CIs over queries,
a query's mean over its seeds being the unit, per category too), :func:`paired_differences`,
:func:`markdown_report` and :func:`sample_grid`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from promptloop_agents.policies.protocol import Agent, act_batch
from promptloop_agents.rollout import ActFn, Episode, RolloutTimes, run_episodes
from promptloop_env import stats
from promptloop_env.stats import bootstrap_ci, mean_ci, rounded


def agent_act_fn(agent: Agent) -> ActFn:
    """Wrap an :class:`Agent` as the batched ``act`` of :func:`run_episodes` (resetting it on each new episode)."""

    def act(observations: list[dict]) -> list[str]:
        if int(np.asarray(observations[0]["segment"]).reshape(-1)[0]) == 0:
            agent.reset()
        return act_batch(agent, observations)

    return act


def uses_previews(agent: Any) -> bool:
    """Whether ``agent`` looks at the previews: False for agents that declare ``uses_previews = False`` (the
    baselines) and for policies in ``mode="a-priori"``; True otherwise (closed loops, the blank control, any
    unknown agent or function). Agents that do not are run on an env that decodes no previews."""
    declared = getattr(agent, "uses_previews", None)
    if declared is not None:
        return bool(declared)
    return getattr(agent, "mode", "closed-loop") != "a-priori"


def episode_seeds(num_queries: int, seeds_per_query: int, seed: int, stream: int = 0) -> np.ndarray:
    """Env seeds ``[queries, seeds_per_query]``: episode ``(i, j)`` gets a seed derived from ``(seed, stream, i,
    j)`` only, so every agent meets the same noise, and adding agents or queries changes no episode.

    >>> s = episode_seeds(3, 2, seed=0)
    >>> s.shape, bool((episode_seeds(2, 2, seed=0) == s[:2]).all()), len({int(v) for v in s.ravel()})
    ((3, 2), True, 6)
    """
    return np.array(
        [
            [int(np.random.SeedSequence([seed, stream, i, j]).generate_state(1)[0]) for j in range(seeds_per_query)]
            for i in range(num_queries)
        ],
        dtype=np.int64,
    ).reshape(num_queries, seeds_per_query)


@dataclass
class EvalResult:
    """Episodes of one agent and their scores under every metric (one score per episode, in episode order)."""

    name: str
    episodes: list[Episode]
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    times: RolloutTimes = field(default_factory=RolloutTimes)

    def summary(self) -> dict[str, Any]:
        """``{metric: {mean, ci_low, ci_high, std, n}}`` (t interval over episodes) plus prompt statistics."""
        out: dict[str, Any] = {metric: mean_ci(values) for metric, values in self.scores.items()}
        out.update(self.prompt_stats())
        return out

    def prompt_stats(self) -> dict[str, float]:
        """Mean words per prompt and the fraction of distinct prompts among all prompts written."""
        prompts = [p for e in self.episodes for p in e.prompts]
        words = float(np.mean([len(p.split()) for p in prompts])) if prompts else 0.0
        return {"prompt_words": words, "distinct_prompts": len(set(prompts)) / max(len(prompts), 1)}


def run_agent(
    name: str,
    agent: Agent | ActFn,
    envs: gym.vector.VectorEnv,
    queries: Sequence[str],
    seeds: Sequence[int],
    metrics: Mapping[str, Callable],
    seed: int = 0,
    bar: Any = None,
    keep_finals: Collection[int] | None = None,
) -> EvalResult:
    """One agent on the given episodes, ``envs.num_envs`` at a time; every batch of final images is scored with
    ``metrics`` as soon as it is done; the episodes keep their final images (those of ``keep_finals``), no previews.

    Args:
        name: the agent's name in the result.
        agent: an :class:`Agent` (reset with ``seed`` first) or a batched ``act`` function.
        envs, queries, seeds: the vector env and the episodes.
        metrics: name -> batched reward callable ``(images, queries) -> floats``.
        seed: the agent's reset seed (seeds the policies' sampling).
        bar: a tqdm bar advanced by the number of finished episodes.
        keep_finals: indices of the episodes whose final images are kept (e.g. for a sample grid); None: all.
    """
    if hasattr(agent, "act"):
        agent.reset(seed=seed)
        act = agent_act_fn(agent)
    else:
        act = agent
    episodes: list[Episode] = []
    scores: dict[str, list[float]] = {m: [] for m in metrics}
    times = RolloutTimes()
    n = envs.num_envs
    for start in range(0, len(queries), n):
        chunk_q, chunk_s = list(queries[start : start + n]), list(seeds[start : start + n])
        batch = run_episodes(envs, act, chunk_q, chunk_s, keep_images=True, times=times)
        images = np.stack([e.final_image for e in batch])
        for metric, fn in metrics.items():
            scores[metric] += [float(v) for v in fn(images, chunk_q)]
        for k, episode in enumerate(batch, start=start):
            episode.previews = []
            if keep_finals is not None and k not in keep_finals:
                episode.final_image = None
        episodes += batch
        if bar is not None:
            bar.update(len(batch))
    return EvalResult(name, episodes, {m: np.asarray(v, dtype=np.float64) for m, v in scores.items()}, times)


def evaluate(
    agents: Mapping[str, Agent | ActFn],
    envs: gym.vector.VectorEnv,
    queries: Sequence[str],
    seeds: Sequence[int],
    metrics: Mapping[str, Callable],
    progress: bool = True,
    seed: int = 0,
) -> dict[str, EvalResult]:
    """Run every agent on the same ``(query, seed)`` episodes and score the final images with ``metrics``.

    Args:
        agents: name -> an :class:`Agent` or a batched ``act`` function.
        envs: the vector env (uniform refinement schedule for evaluation).
        queries, seeds: the episodes, identical for all agents (paired comparison).
        metrics: name -> batched reward callable ``(images, queries) -> floats`` on the final images.
        progress: show a progress bar over all episodes.
        seed: each agent is reset with it before its episodes (seeds the policies' sampling).
    """
    with tqdm(total=len(agents) * len(queries), desc="evaluate", disable=not progress, leave=False) as bar:
        return {
            name: run_agent(name, agent, envs, queries, seeds, metrics, seed=seed, bar=bar)
            for name, agent in agents.items()
        }


def paired_difference(a: EvalResult, b: EvalResult, metric: str) -> dict[str, float]:
    """Mean and 95% CI of ``a - b`` per episode (the agents ran on the same queries and seeds)."""
    return stats.paired_difference(a.scores[metric], b.scores[metric])


def query_categories(queries: Sequence[str], prompt_set: str, backbone: str) -> list[str] | None:
    """Each query's GenEval category when the evaluation is on toy-compose (its prompt set or backbone), else None.

    >>> query_categories(["two red circles"], "toy-compose-test", "toy-compose")
    ['counting']
    """
    if not (prompt_set.startswith("toy-compose") or backbone.startswith("toy-compose")):
        return None
    from promptloop_env.toy.compose_spec import parse

    return [parse(q).category for q in queries]


def draw_queries(queries: Sequence[str], count: int, seed: int, categories: Sequence[str] | None = None) -> list[int]:
    """Indices of ``count`` queries drawn across ``categories`` (one per query; None: one category for all):
    the categories take turns, each giving its queries in a seeded random order, so that any ``count`` covers
    every category as evenly as it can. The indices come back in the set's order; ``count`` 0 (or more than the
    set) keeps every query.

    >>> first, second = draw_queries(["a", "b", "c", "d"], 2, seed=0, categories=["x", "x", "y", "y"])
    >>> first in (0, 1), second in (2, 3)
    (True, True)
    >>> draw_queries(["a", "b"], 0, seed=0)
    [0, 1]
    """
    if not count or count >= len(queries):
        return list(range(len(queries)))
    labels = list(categories) if categories is not None else [""] * len(queries)
    rng = np.random.default_rng(seed)
    pools = {c: [i for i, label in enumerate(labels) if label == c] for c in dict.fromkeys(labels)}
    pools = {c: [pool[k] for k in rng.permutation(len(pool))] for c, pool in pools.items()}
    picked: list[int] = []
    while len(picked) < count:
        for pool in pools.values():
            if pool and len(picked) < count:
                picked.append(pool.pop(0))
    return sorted(picked)


def sample_episodes(categories: list[str], seeds_per_query: int, count: int) -> list[int]:
    """Episode indices of the sample grid, seed 0 of ``count`` queries: the first query of each category, then
    the second of each, and so on (one category for all: the first ``count`` queries).

    >>> sample_episodes(["a", "a", "b", "b"], seeds_per_query=2, count=3)
    [0, 4, 2]
    """
    seen: dict[str, int] = {}
    rank = []
    for category in categories:
        rank.append(seen.get(category, 0))
        seen[category] = rank[-1] + 1
    order = sorted(range(len(categories)), key=lambda i: (rank[i], i))
    return [i * seeds_per_query for i in order[:count]]


# -- reports --------------------------------------------------------------------------------------------------


def query_means(scores: np.ndarray, seeds_per_query: int) -> np.ndarray:
    """Per-query means of scores in query-major episode order (episode ``i * seeds_per_query + j``)."""
    return np.asarray(scores, dtype=np.float64).reshape(-1, seeds_per_query).mean(axis=1)


def summarise(result: EvalResult, seeds_per_query: int, categories: Sequence[str] | None = None) -> dict[str, Any]:
    """Per metric: the mean with its bootstrap 95% CI over queries (``n`` = queries) and, with ``categories`` (one
    per query), the same per category; plus prompt statistics and the seconds spent in the env and the agent."""
    metrics: dict[str, Any] = {}
    for metric, values in result.scores.items():
        per_query = query_means(values, seeds_per_query)
        metrics[metric] = rounded(bootstrap_ci(per_query))
        if categories is not None:
            cats = np.asarray(categories)
            metrics[metric]["by_category"] = {
                c: rounded(bootstrap_ci(per_query[cats == c])) for c in dict.fromkeys(categories)
            }
    seconds = {"env": round(result.times.env, 3), "agent": round(result.times.policy, 3)}
    return {"metrics": metrics, **rounded(result.prompt_stats()), "seconds": seconds}


def paired_differences(
    results: Mapping[str, EvalResult], metric: str, seeds_per_query: int, pairs: Sequence[tuple[str, str]]
) -> dict[str, dict[str, float]]:
    """``{"a - b": mean and bootstrap 95% CI}`` of per-query mean differences, for each ``(a, b)`` of ``pairs``."""
    out = {}
    for a, b in pairs:
        first = query_means(results[a].scores[metric], seeds_per_query)
        second = query_means(results[b].scores[metric], seeds_per_query)
        out[f"{a} - {b}"] = rounded(stats.paired_difference(first, second, method="bootstrap"))
    return out


def _ci(summary: Mapping[str, float], signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"{fmt.format(summary['mean'])} [{fmt.format(summary['ci_low'])}, {fmt.format(summary['ci_high'])}]"


def markdown_report(report: Mapping[str, Any]) -> str:
    """The ``eval.md`` of a ``promptloop eval`` report (``eval.json``'s content): per backbone, each agent's mean
    and 95% CI per metric and its paired difference to the baseline, then the first metric per category."""
    setup = report["setup"]
    lines = [
        "# promptloop eval",
        "",
        f"{setup['queries']} queries ({setup['eval_prompts']}) x {setup['seeds_per_query']} seeds, the same episodes "
        f"for every agent; {setup['num_inference_steps']} steps, {setup['num_refinements']} refinements at "
        f"`{setup['refine_schedule']}`, env reward `{setup['reward']}`. Mean [bootstrap 95% CI] over queries (a "
        f"query's mean over its seeds is one unit); differences are paired, per query, minus `{setup['baseline']}`.",
    ]
    for backbone, part in report["backbones"].items():
        agents = part["agents"]
        metrics = list(next(iter(agents.values()))["metrics"])
        lines += ["", f"## `{backbone}`", ""]
        sampling = report.get("sampling") or {}
        head = ["agent", *metrics, *(f"{m} - {setup['baseline']}" for m in metrics)]
        head += ["prompts chosen"] if sampling else []
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, summary in agents.items():
            cells = [_ci(summary["metrics"][m]) for m in metrics]
            vs = part["vs_baseline"].get(name)
            cells += [_ci(vs[m], signed=True) if vs else "-" for m in metrics]
            cells += [sampling.get(name, "-")] if sampling else []
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        first = metrics[0]
        by_category = next(iter(agents.values()))["metrics"][first].get("by_category")
        if by_category:
            lines += ["", f"{first} per category (mean over its queries):", ""]
            lines += ["| agent | " + " | ".join(by_category) + " |", "|" + "---|" * (len(by_category) + 1)]
            for name, summary in agents.items():
                row = summary["metrics"][first]["by_category"]
                lines.append(f"| {name} | " + " | ".join(f"{row[c]['mean']:.3f}" for c in by_category) + " |")
        if part.get("samples"):
            columns = "; ".join(f"{q!r} (seed {s})" for q, s in part["samples"]["columns"])
            lines += ["", f"![final images]({part['samples']['path']})", "", f"Rows: agents. Columns: {columns}."]
    if sampling:
        lines += ["", "Prompts chosen: `greedy` = the policy's most likely prompt (`--do-sample` samples instead)."]
    return "\n".join(lines) + "\n"


def sample_grid(
    results: Mapping[str, EvalResult], episodes: Sequence[int], out: str | Path, metric: str | None = None
) -> Path:
    """Final images of the given episode indices, one row per agent (labelled with its name), one column per
    episode (labelled with its query), the same queries and seeds in every row; the score under ``metric`` (the
    first by default) above each image."""
    from promptloop_agents.evaluation.plots import image_table

    first = next(iter(results.values()))
    metric = metric or next(iter(first.scores), None)
    rows = [[r.episodes[k].final_image for k in episodes] for r in results.values()]
    scores = [[f"{metric} {r.scores[metric][k]:.2f}" if metric else "" for k in episodes] for r in results.values()]
    columns = [first.episodes[k].query for k in episodes]
    title = "Final images: a row per agent, a column per query (the same noise seed in each column)"
    return image_table(rows, list(results), columns, out, cell_labels=scores, title=title)


def write_report(
    out_dir: Path,
    results: Mapping[str, Mapping[str, EvalResult]],
    setup: dict[str, Any],
    queries: Sequence[str],
    categories: Sequence[str] | None,
    seeds: Sequence[int],
    samples: Sequence[int],
    best_static: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``eval.json``, ``eval.md`` and a sample grid per backbone (``samples_<backbone>.png``) to ``out_dir``.

    Args:
        out_dir: the output folder (created).
        results: ``{backbone: {agent: result}}``, episodes in query-major order (query ``i``, seed ``j``: episode
            ``i * seeds_per_query + j``), the same episodes for every agent.
        setup: the run's settings; needs ``seeds_per_query`` and ``baseline`` (an agent name; '' or unknown:
            the first agent), and the fields :func:`markdown_report` prints.
        queries, categories, seeds: the queries, their categories (or None) and the env seed of every episode.
        samples: episode indices of the sample grids' columns.
        best_static: ``{backbone: {query: {"rewrite", "prompt"}}}`` where the best static rewrite was chosen.
        extra: more top-level entries of ``eval.json``.

    Returns:
        The ``eval.json`` payload.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_seeds = int(setup["seeds_per_query"])
    first = next(iter(results.values()))
    baseline = setup.get("baseline") if setup.get("baseline") in first else next(iter(first), "")
    setup = {**setup, "baseline": baseline}
    report: dict[str, Any] = {"setup": setup, "queries": list(queries), "categories": categories}
    report["seeds"] = np.asarray(seeds).reshape(len(queries), n_seeds).tolist()
    report["backbones"] = {}
    for backbone, agents in results.items():
        names = list(agents)
        metric_names = list(agents[names[0]].scores)
        part: dict[str, Any] = {"agents": {n: summarise(r, n_seeds, categories) for n, r in agents.items()}}
        part["vs_baseline"] = {
            n: {m: paired_differences(agents, m, n_seeds, [(n, baseline)])[f"{n} - {baseline}"] for m in metric_names}
            for n in names
            if n != baseline
        }
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        part["paired"] = {m: paired_differences(agents, m, n_seeds, pairs) for m in metric_names}
        if best_static and backbone in best_static:
            part["best_static"] = best_static[backbone]
        part["episodes"] = {  # [query][seed], for any other statistic
            n: {
                "scores": {m: r.scores[m].reshape(-1, n_seeds).round(6).tolist() for m in metric_names},
                "prompts": [
                    [e.prompts for e in r.episodes[i : i + n_seeds]] for i in range(0, len(r.episodes), n_seeds)
                ],
            }
            for n, r in agents.items()
        }
        if samples:
            path = out_dir / f"samples_{_slug(backbone)}.png"
            sample_grid(agents, samples, path)
            columns = [(queries[k // n_seeds], k % n_seeds) for k in samples]
            part["samples"] = {"path": path.name, "columns": columns}
        report["backbones"][backbone] = part
    report.update(extra)
    (out_dir / "eval.json").write_text(json.dumps(report, indent=1))
    (out_dir / "eval.md").write_text(markdown_report(report))
    return report


def _slug(text: str) -> str:
    """A file-name-safe form of a backbone name or path."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip("/")).strip("_") or "backbone"

"""How much can a look at the preview pay on ``toy-compose``? Fork each trajectory at a refinement point and try
every rewrite from there.

PromptLoop gains over a prompt written up front only where the best next prompt depends on what the preview
shows. This measures that dependence directly, with the analyser reading the preview (privileged: a policy sees
only pixels, so this bounds what a policy could read):

1. Training queries, each on a few noise seeds, start with the best one-shot rewrite of their category (the
   shipped policy's ``selection.json``) and denoise to a refinement point (step 9, 11 or 13 of 20).
2. There the episode is copied once per candidate prompt (the query's rewrite family and the rewrite in force,
   ``keep``), each copy runs to the end with its prompt, and its final image is scored (strict and soft).
3. Three ways to choose the candidate, each chosen on one half of the queries and scored on the other (two-fold,
   by query, so no choice is scored on the episodes it was picked on):
   - ``a priori``: per category, the single candidate with the best mean (what a prompt planned without the
     preview can do from this point);
   - ``closed loop``: per category *and per reading of the preview* (which of the query's constraints the
     analyser finds satisfied on the preview, or "no object yet"), the candidate with the best mean;
   - ``foresight``: the best candidate of each episode (knows the noise's future: a ceiling no policy reaches).
   The oracle's and the corrective rules (``compose_reference.oracle_prompt``, ``compose_teacher.corrective_prompt``)
   are scored too.

The difference closed loop minus a priori (paired per episode, bootstrap 95% CI over queries) is the headroom
that visual feedback has at that point, for a reader as good as the analyser.

Run: ``python research/toy_compose/compose_feedback_headroom.py`` (about 10 minutes on one core); writes
``research/toy_compose/results/compose_feedback_headroom.json`` (and every fork's scores in ``..._records.jsonl.gz``;
``--from-records`` re-analyses them without forking).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import research.* (and this checkout's packages) from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

RESULTS = Path(__file__).parent / "results"
POLICY = Path(__file__).parents[2] / "promptloop_agents" / "assets" / "toy-compose-policy"
SEED0 = 900_000  # noise seeds of this measurement (the rewrite selection used 700_000.., evaluation 0..)


def preview_reading(preview: np.ndarray, query) -> str:
    """A coarse reading of the preview by the analyser: which constraints of ``query`` hold ("none" if empty)."""
    from promptloop_agents.policies.compose_reference import read_preview
    from promptloop_env.toy.compose_spec import check

    seen = read_preview(preview)
    if not seen.objects:
        return "no object"
    return ",".join(f"{k}={int(v)}" for k, v in sorted(check(seen, query).items()))


def collect(
    queries: list[str],
    seeds: int,
    points: tuple[int, ...],
    chunk: int = 32,
    progress: bool = True,
    guidance_scale: float | None = None,
    schedule: tuple[int, ...] | None = None,
) -> list[dict]:
    """One record per (query, seed, point): the preview's reading and every candidate's final scores."""
    from tqdm.auto import tqdm

    from promptloop_agents.policies.compose_reference import fork_outcomes, oracle_prompt, rewrite_family
    from promptloop_agents.policies.compose_teacher import apply_rewrite, corrective_prompt, load_selection
    from promptloop_env.core import PromptLoopCore
    from promptloop_env.toy.compose_spec import parse
    from research.toy_compose.selection import COMPOSE_SCHEDULE, compose_env_kwargs

    choice = load_selection(POLICY)
    schedule = schedule or COMPOSE_SCHEDULE  # the episodes stop (and may fork) at these steps
    kwargs = compose_env_kwargs(reward="toy-compose", schedule=schedule, guidance_scale=guidance_scale)
    core = PromptLoopCore(**kwargs)
    # the copies need no previews: a core without them (same backbone object, same schedule) runs them
    blind = PromptLoopCore(**{**kwargs, "preview": "none"})
    records = []
    jobs = [(i, q, s) for i, q in enumerate(queries) for s in range(seeds)]
    bar = tqdm(total=len(jobs), desc="forked episodes", disable=not progress)
    for at in range(0, len(jobs), chunk):
        part = jobs[at : at + chunk]
        parsed = [parse(q) for _, q, _ in part]
        one_shot = [apply_rewrite(choice[p.category], q) for p, (_, q, _) in zip(parsed, part, strict=True)]
        episodes = core.start(
            [np.random.default_rng(SEED0 + s) for _, _, s in part],
            [q for _, q, _ in part],
            [SEED0 + 1000 * s + i for i, _, s in part],
        )
        core.advance(episodes, one_shot)
        while not episodes[0].terminated:
            step = episodes[0].traj.step
            if step in points:
                candidates = []
                for ep, p, prompt in zip(episodes, parsed, one_shot, strict=True):
                    c = {"keep": prompt, **rewrite_family(ep.query)}
                    c["oracle_rule"] = oracle_prompt(p, ep.image, prompt)
                    c["corrective_rule"] = corrective_prompt(p, ep.image, prompt)
                    candidates.append(c)
                outcomes = fork_outcomes(blind, episodes, candidates)
                for ep, p, (_, q, s), c, o in zip(episodes, parsed, part, candidates, outcomes, strict=True):
                    records.append(
                        {
                            "query": q,
                            "seed": s,
                            "category": p.category,
                            "step": step,
                            "reading": preview_reading(ep.image, p),
                            "prompts": c,
                            "strict": {n: v[0] for n, v in o.items()},
                            "soft": {n: v[1] for n, v in o.items()},
                        }
                    )
            core.advance(episodes, one_shot)
        bar.update(len(part))
    bar.close()
    return records


FIXED = ("keep", "identity", "caption", "swap", "twice", "restate", "count_up", "count_down", "swap_count_up")


def _best(rows: list[dict], metric: str) -> str:
    """The fixed candidate with the best mean ``metric`` over ``rows`` (ties: ``keep`` first, then by name)."""
    totals: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        for name in FIXED:
            # a rewrite equal to another text is missing from the family: it is that text's score
            totals[name].append(_score(r, name, metric))
    return max(FIXED, key=lambda n: (np.mean(totals[n]), n == "keep"))


def _same_as(record: dict, name: str) -> str:
    from promptloop_agents.policies.compose_reference import REWRITES
    from promptloop_env.toy.compose_spec import parse

    text = record["query"] if name == "identity" else REWRITES[name](parse(record["query"]))
    return next(n for n, p in record["prompts"].items() if p == text)


def _score(record: dict, name: str, metric: str) -> float:
    return record[metric][name] if name in record[metric] else record[metric][_same_as(record, name)]


def satisfied(reading: str) -> str:
    """A coarser reading: how many of the query's constraints hold on the preview (``2/3``), or "no object"."""
    if reading == "no object":
        return reading
    flags = [int(part.rsplit("=", 1)[1]) for part in reading.split(",")]
    return f"{sum(flags)}/{len(flags)}"


def analyse(records: list[dict], metric: str = "strict", min_cell: int = 4, coarse: bool = False) -> dict:
    """Two-fold (by query) values of a priori, closed-loop and foresight choices per point, with paired CIs.

    The closed-loop choice conditions on the reading (each constraint's flag, or with ``coarse`` only how many
    hold); a reading seen fewer than ``min_cell`` times in the training fold falls back to the a-priori choice.
    """
    if coarse:
        records = [{**r, "reading": satisfied(r["reading"])} for r in records]
    from promptloop_env.stats import bootstrap_ci, paired_difference, rounded

    queries = sorted({r["query"] for r in records})
    fold = {q: i % 2 for i, q in enumerate(np.random.default_rng(0).permutation(queries))}
    out = {}
    for step in sorted({r["step"] for r in records}):
        rows = [r for r in records if r["step"] == step]
        values: dict[str, list[float]] = defaultdict(list)
        keys: list[str] = []
        categories: list[str] = []
        for test_fold in (0, 1):
            train = [r for r in rows if fold[r["query"]] != test_fold]
            for r in (r for r in rows if fold[r["query"]] == test_fold):
                same_category = [t for t in train if t["category"] == r["category"]]
                a_priori = _best(same_category, metric) if same_category else "keep"
                same_reading = [t for t in same_category if t["reading"] == r["reading"]]
                closed = _best(same_reading, metric) if len(same_reading) >= min_cell else a_priori
                values["keep"].append(_score(r, "keep", metric))
                values["a_priori"].append(_score(r, a_priori, metric))
                values["closed_loop"].append(_score(r, closed, metric))
                values["oracle_rule"].append(r[metric]["oracle_rule"])
                values["corrective_rule"].append(r[metric]["corrective_rule"])
                values["foresight"].append(max(r[metric].values()))
                keys.append(r["query"])
                categories.append(r["category"])

        def per_query(xs: list[float], keys: list[str] = keys) -> np.ndarray:
            by: dict[str, list[float]] = defaultdict(list)
            for k, x in zip(keys, xs, strict=True):
                by[k].append(x)
            return np.array([np.mean(by[k]) for k in sorted(by)])

        means = {name: rounded(bootstrap_ci(per_query(v))) for name, v in values.items()}
        diffs = {
            f"{a}-{b}": rounded(paired_difference(per_query(values[a]), per_query(values[b]), method="bootstrap"))
            for a, b in (
                ("closed_loop", "a_priori"),
                ("a_priori", "keep"),
                ("closed_loop", "keep"),
                ("oracle_rule", "keep"),
                ("corrective_rule", "keep"),
                ("foresight", "keep"),
            )
        }
        readings = defaultdict(int)
        for r in rows:
            readings[r["reading"] != "no object"] += 1
        per_category = {
            c: {
                n: round(float(np.mean([x for x, k in zip(v, categories, strict=True) if k == c])), 4)
                for n, v in values.items()
            }
            for c in sorted(set(categories))
        }
        out[str(step)] = {
            "per_category": per_category,
            "episodes": len(rows),
            "queries": len({r["query"] for r in rows}),
            "previews_with_objects": readings[True] / len(rows),
            "means": means,
            "differences": diffs,
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=120, help="training queries (spread over the categories)")
    parser.add_argument("--seeds", type=int, default=2, help="noise seeds per query")
    parser.add_argument("--points", default="9,11,13", help="refinement steps to fork at (of 0, 9, 11, 13, 15)")
    parser.add_argument("--out", default=str(RESULTS / "compose_feedback_headroom.json"))
    parser.add_argument("--from-records", action="store_true", help="re-analyse the saved records, fork nothing")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the backbone's, 1)")
    parser.add_argument(
        "--schedule", default="0,9,11,13,15", help="the episodes' 5 refinement steps; --points must be among them"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    records_path = out.with_name(out.stem + "_records.jsonl.gz")

    from promptloop_env.prompts import resolve_prompts
    from promptloop_env.toy.compose_spec import parse

    train = list(resolve_prompts("toy-compose-train", None))
    by_category: dict[str, list[str]] = defaultdict(list)
    for q in np.random.default_rng(1).permutation(train).tolist():
        by_category[parse(q).category].append(q)
    per = max(1, args.queries // len(by_category))
    queries = [q for c in sorted(by_category) for q in by_category[c][:per]]
    points = tuple(int(p) for p in args.points.split(","))
    schedule = tuple(int(p) for p in args.schedule.split(","))
    if not set(points) <= set(schedule[1:]):
        parser.error(f"--points {args.points} must be refinement steps of --schedule {args.schedule} (not 0).")
    start = time.perf_counter()
    if args.from_records:
        with gzip.open(records_path, "rt") as handle:
            records = [json.loads(line) for line in handle]
        setup = json.loads(out.read_text())["setup"]
    else:
        records = collect(queries, args.seeds, points, guidance_scale=args.guidance, schedule=schedule)
        setup = {
            "queries": len(queries),
            "seeds": args.seeds,
            "points": points,
            "guidance_scale": args.guidance,
            "schedule": schedule,
            "start": "best one-shot rewrite per category (promptloop_agents/assets/toy-compose-policy/selection.json)",
            "candidates": "keep, the query's rewrite family (rewrite_family), oracle, corrective rule",
            "seconds": round(time.perf_counter() - start, 1),
        }
        with gzip.open(records_path, "wt") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in records)
    result = {
        "setup": setup,
        "strict": analyse(records, "strict"),
        "soft": analyse(records, "soft"),
        "strict_coarse_reading": analyse(records, "strict", coarse=True),
        "records": records_path.name,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    for metric in ("strict", "soft", "strict_coarse_reading"):
        print(f"\n{metric}: step | keep | a priori | closed loop | foresight | closed - a priori [95% CI]")
        for step, row in result[metric].items():
            m, d = row["means"], row["differences"]["closed_loop-a_priori"]
            print(
                f"{step:>4} | {m['keep']['mean']:.3f} | {m['a_priori']['mean']:.3f} | {m['closed_loop']['mean']:.3f}"
                f" | {m['foresight']['mean']:.3f} | {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
            )
    return result


if __name__ == "__main__":
    main()

"""Train the toy-compose policy from forks: at a refinement point, try every candidate prompt and learn from the
rewards which one to write given the preview (expert iteration with the actions enumerated).

Distilling a rule set (:mod:`research.toy_compose.students`) caps the policy at the rules' value and needs a
student that reads the preview as exactly as the analyser the rules use. Forks label a decision by its outcome
instead:

1. Training queries, each on a few noise seeds, start with the best one-shot rewrite of their category and
   denoise to the fork step (step 8 of 20 by default, on the refinement schedule 0, 6, 8, 10, 12).
2. There the episode is copied once per candidate (keep the prompt in force, the query's rewrite family, the
   oracle's and the corrective rule's prompt), each copy runs to the end with its prompt and its final image is
   scored (strict, GenEval's rule).
3. The target at the fork is ``keep`` when keeping succeeds or nothing succeeds; otherwise the succeeding candidate
   that succeeds most often, within the category, where keeping fails (one consistent label per situation). The
   other decisions of the episode are the one-shot rewrite (segment 0) and ``keep`` (later refinements).

The student sees only the previews and the state text (a quarter of the examples hide the preview, for the
a-priori mode); the analyser only proposes two of the candidates and scores the finals, as a reward does. What
the student can learn is the part of the outcome the preview predicts: the best candidate of one episode also
reflects the noise's future, which no policy sees.

Run: ``python research/toy_compose/forks.py --out runs/compose-forks`` (about 20 minutes of forks and 12 of
fitting on one core); writes the policy to ``OUT/policy`` and the forks' outcomes to ``OUT/forks.jsonl.gz``.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import research.* (and this checkout's packages) from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from research.toy_compose.students import StudentFit, StudentRollouts, fit_student

FORK_SEED0 = 800_000  # noise seeds of the fork rollouts (selection 700_000.., headroom 900_000.., evaluation 0..)
FORK_SCHEDULE = (0, 6, 8, 10, 12)
FORK_STEP = 8


def fork_candidates(query: str, preview: np.ndarray, prompt: str) -> dict[str, str]:
    """The prompts tried at a fork, by name, distinct texts only (the first name wins): ``keep`` (the prompt in
    force), the query's rewrite family, and the oracle's and the corrective rule's answer to the preview."""
    from promptloop_agents.policies.compose_reference import oracle_prompt, rewrite_family
    from promptloop_agents.policies.compose_teacher import corrective_prompt
    from promptloop_env.toy.compose_spec import parse

    parsed = parse(query)
    named = {"keep": prompt, **rewrite_family(query)}
    named["oracle_rule"] = oracle_prompt(parsed, preview, prompt)
    named["corrective_rule"] = corrective_prompt(parsed, preview, prompt)
    out: dict[str, str] = {}
    for name, text in named.items():
        if text not in out.values():
            out[name] = text
    return out


def collect_forks(
    queries: Sequence[str],
    seeds_per_query: int,
    choice: dict[str, str],
    schedule: Sequence[int] = FORK_SCHEDULE,
    fork_step: int = FORK_STEP,
    backbone: str = "toy-compose",
    chunk: int = 32,
    text_only_fraction: float = 0.25,
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Roll out the one-shot rewrite with ``keep`` afterwards; fork every episode at ``fork_step``.

    Returns the examples (the fork's observation with an empty target, filled by :func:`label_forks`) and one
    record per fork: query, seed, category, the candidates' prompts and strict and soft scores.
    """
    from tqdm.auto import tqdm

    from promptloop_agents.learners.sft import SFTExample
    from promptloop_agents.policies.compose_reference import fork_outcomes
    from promptloop_agents.policies.compose_teacher import apply_rewrite
    from promptloop_env.core import PromptLoopCore
    from promptloop_env.toy.compose_spec import parse
    from research.toy_compose.selection import compose_env_kwargs

    if fork_step not in schedule[1:]:
        raise ValueError(f"fork_step={fork_step} must be a refinement step of schedule={list(schedule)} (not 0).")
    kwargs = compose_env_kwargs(backbone, reward="toy-compose", schedule=schedule)
    core = PromptLoopCore(**kwargs)
    blind = PromptLoopCore(**{**kwargs, "preview": "none"})  # the copies need no previews
    rng = np.random.default_rng(seed)
    jobs = [(i, q, s) for i, q in enumerate(queries) for s in range(seeds_per_query)]
    examples: list[Any] = []
    records: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc="forked episodes", disable=not progress)
    for at in range(0, len(jobs), chunk):
        part = jobs[at : at + chunk]
        one_shot = [apply_rewrite(choice[parse(q).category], q) for _, q, _ in part]
        episodes = core.start(
            [np.random.default_rng(FORK_SEED0 + s) for _, _, s in part],
            [q for _, q, _ in part],
            [FORK_SEED0 + 1000 * s + i for i, _, s in part],
        )
        while not episodes[0].terminated:
            observations = [core.observation(ep) for ep in episodes]
            actions = [one_shot[j] if ep.segment == 0 else ep.prompt for j, ep in enumerate(episodes)]  # then keep
            forked = episodes[0].traj.step == fork_step
            if forked:  # the fork's examples get their targets once labelled (see main)
                candidates = [fork_candidates(ep.query, ep.image, ep.prompt) for ep in episodes]
                outcomes = fork_outcomes(blind, episodes, candidates)
                for j, ((_, q, s), c, o) in enumerate(zip(part, candidates, outcomes, strict=True)):
                    records.append(
                        {"query": q, "seed": s, "category": parse(q).category, "prompts": c}
                        | {"strict": {n: v[0] for n, v in o.items()}, "soft": {n: v[1] for n, v in o.items()}}
                        | {"example": len(examples) + j}
                    )
            examples += [
                SFTExample(obs, "" if forked else action, with_image=bool(rng.random() >= text_only_fraction))
                for obs, action in zip(observations, actions, strict=True)
            ]
            core.advance(episodes, actions)
        bar.update(len(part))
    bar.close()
    return examples, records


def label_forks(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Set each record's ``label``: ``keep`` when keeping succeeds or nothing succeeds, else the succeeding
    candidate ranked first in its category. Returns the ranking per category: candidate names by how often they
    succeed where keeping fails (ties: by name)."""
    wins: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["strict"]["keep"] < 1:
            for name, value in r["strict"].items():
                if name != "keep":
                    wins[r["category"]][name].append(value)
    ranking = {c: sorted(w, key=lambda n, w=w: (-float(np.mean(w[n])), n)) for c, w in sorted(wins.items())}
    for r in records:
        good = [n for n, v in r["strict"].items() if v >= 1 and n != "keep"]
        if r["strict"]["keep"] >= 1 or not good:
            r["label"] = "keep"
        else:
            r["label"] = min(good, key=lambda n, order=ranking[r["category"]]: order.index(n))
    return ranking


def fork_report(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The strict score at the fork of keeping, of the labels, and of the best candidate (foresight), overall and
    per category, and the share of forks whose label changes the prompt."""
    out: dict[str, Any] = {
        "forks": len(records),
        "changed_share": float(np.mean([r["label"] != "keep" for r in records])),
    }
    for name, rows in [("all", records)] + [
        (c, [r for r in records if r["category"] == c]) for c in sorted({r["category"] for r in records})
    ]:
        out[name] = {
            "keep": round(float(np.mean([r["strict"]["keep"] for r in rows])), 4),
            "label": round(float(np.mean([r["strict"][r["label"]] for r in rows])), 4),
            "n": len(rows),
        }
    return out


@dataclass
class ForkArgs(StudentRollouts):
    """The command line of :func:`main` (with :class:`~research.toy_compose.students.StudentFit`'s)."""

    out: str = field(default="runs/compose-forks", metadata={"help": "output folder (the policy goes to OUT/policy)"})
    queries: int = field(default=0, metadata={"help": "training queries used (0: all)"})
    selection_from: str = field(default="shipped", metadata={"help": "a selection.json or policy folder ('shipped')"})
    schedule: str = field(default=",".join(map(str, FORK_SCHEDULE)), metadata={"help": "refinement points"})
    fork_step: int = field(default=FORK_STEP, metadata={"help": "the refinement point the episodes fork at"})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from promptloop_agents.policies.compose_teacher import load_selection
    from promptloop_env.cli import parse_configs
    from promptloop_env.prompts import resolve_prompts

    args, fit = parse_configs([ForkArgs, StudentFit], argv, description=__doc__.split("\n\n")[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.selection_from == "shipped":
        from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY

        choice = load_selection(SHIPPED_TOY_COMPOSE_POLICY)
    elif args.selection_from.endswith(".json"):
        saved = json.loads(Path(args.selection_from).read_text())
        choice = saved.get("choice", saved)
    else:
        choice = load_selection(args.selection_from)
    queries = list(resolve_prompts(args.train_prompts, None))
    if args.queries:  # a random subset, spread over the categories
        picked = np.random.default_rng(fit.seed).choice(len(queries), args.queries, replace=False)
        queries = [queries[i] for i in sorted(picked)]
    schedule = tuple(int(p) for p in args.schedule.split(","))
    tick = time.perf_counter()
    examples, records = collect_forks(
        queries,
        args.seeds_per_query,
        choice,
        schedule,
        args.fork_step,
        args.backbone,
        text_only_fraction=args.text_only_fraction,
        seed=fit.seed,
        progress=fit.progress,
    )
    ranking = label_forks(records)
    for r in records:
        examples[r["example"]].target = r["prompts"][r["label"]]
    with gzip.open(out / "forks.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    report = {
        "teacher": "forks",
        "schedule": schedule,
        "fork_step": args.fork_step,
        "queries": len(queries),
        "seeds_per_query": args.seeds_per_query,
        "ranking": ranking,
        "fork_outcomes": fork_report(records),
        "rollout_seconds": time.perf_counter() - tick,
    }
    print(json.dumps(report["fork_outcomes"], indent=2))
    report = fit_student(out / "policy", examples, choice, report, fit)
    print(json.dumps({k: v for k, v in report.items() if k != "ranking"}, indent=2))
    return report


if __name__ == "__main__":
    main()

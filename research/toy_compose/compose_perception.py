"""How well do the distilled toy-compose policies read a preview? Their "describe the image" answers against the
analyser's reading, on held-out queries.

Every distilled student of :mod:`research.toy_compose.students` is also trained to describe a preview (the
objects the analyser reads, left to right). Its corrections can only be as good as that reading: this measures it
on previews the students never saw (the ``toy-compose-test`` queries on new noise seeds, the best one-shot rewrite
first, previews at steps 9, 11, 13 and 15 of 20), as

- ``exact``: the description equals the analyser's;
- ``counts``: for every object group of the query, the number the description names equals the number the
  analyser reads (what the corrective rule acts on);
- ``counts_when_wrong``: the same, on the previews where the analyser's counts differ from the query's (where a
  correction is due);
- ``blind_counts`` and ``blind_prompt_counts``: the ``counts`` of describers that do not look and name the
  query's objects, or those of the prompt in force (what reading must beat to be worth anything).

It also measures the label itself (``analyser``): how often the analyser's own group counts survive faint noise
added to the preview (Gaussian, 1 and 3 of 255 per channel, below what a person sees). A reading that flips
under such noise cannot be imitated exactly, so this is a ceiling for every student.

Run: ``python research/toy_compose/compose_perception.py [POLICY ...]`` (a minute or two on one core; default: the
shipped policy); writes ``research/toy_compose/results/compose_perception.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import research.* (and this checkout's packages) from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

RESULTS = Path(__file__).parent / "results"
SEED0 = 950_000  # noise seeds of this measurement


def parse_description(text: str) -> list[tuple[str | None, str]]:
    """``"red circle, square"`` -> ``[("red", "circle"), (None, "square")]``; ``"nothing"`` -> ``[]``."""
    out: list[tuple[str | None, str]] = []
    for item in text.split(","):
        words = item.split()
        if not words or words == ["nothing"]:
            continue
        out.append((words[-2] if len(words) > 1 else None, words[-1]))
    return out


def group_counts(objects: list[tuple[str | None, str]], query) -> list[int]:
    """For each group of ``query``: how many of ``objects`` match its shape (and colour, when the group names one)."""
    return [sum(s == g.shape and (g.colour is None or c == g.colour) for c, s in objects) for g in query.groups]


def prompt_counts(prompt: str, query) -> list[int]:
    """For each group of ``query``: the count the prompt in force asks for (0 if it does not name the group)."""
    from promptloop_env.toy.compose_spec import parse

    try:
        groups = parse(prompt).groups
    except ValueError:
        return [0] * len(query.groups)
    return [sum(g.count for g in groups if g.shape == w.shape and g.colour == w.colour) for w in query.groups]


def previews(queries: list[str], choice: dict[str, str]) -> list[dict]:
    """Observations at every refinement point after the first, on the one-shot rewrite kept to the end."""
    from promptloop_agents.policies.compose_teacher import apply_rewrite
    from promptloop_env.core import PromptLoopCore
    from promptloop_env.toy.compose_spec import parse
    from research.toy_compose.selection import compose_env_kwargs

    core = PromptLoopCore(**compose_env_kwargs(reward="toy-compose"))
    out = []
    for at in range(0, len(queries), 60):
        part = queries[at : at + 60]
        prompts = [apply_rewrite(choice[parse(q).category], q) for q in part]
        episodes = core.start(
            [np.random.default_rng(SEED0)] * len(part), part, [SEED0 + at + i for i in range(len(part))]
        )
        core.advance(episodes, prompts)
        while not episodes[0].terminated:
            out += [core.observation(ep) for ep in episodes]
            core.advance(episodes, prompts)
    return out


def analyser_readings(observations: list[dict]) -> list[tuple[str, list[int]]]:
    """Per observation, the analyser's description of the preview and its count of each of the query's groups."""
    from promptloop_agents.policies.compose_reference import read_preview
    from promptloop_env.toy.compose_spec import parse
    from research.toy_compose.students import seen_text

    out = []
    for o in observations:
        seen = read_preview(o["image"])
        out.append((seen_text(seen), query_counts(seen, parse(str(o["query"])))))
    return out


def query_counts(seen, query) -> list[int]:
    """For each group of ``query``: how many objects of its shape (and colour, if named) the analyser read."""
    return [seen.count(g.shape, g.colour) for g in query.groups]


def analyser_stability(observations: list[dict], readings: list[tuple[str, list[int]]], sigma: float) -> float:
    """Share of previews whose analyser group counts are unchanged by Gaussian noise of ``sigma`` (uint8 units)."""
    from promptloop_agents.policies.compose_reference import read_preview
    from promptloop_env.toy.compose_spec import parse

    rng = np.random.default_rng(SEED0)
    same = []
    for o, (_, counts) in zip(observations, readings, strict=True):
        noisy = np.clip(o["image"].astype(np.float64) + rng.normal(0.0, sigma, o["image"].shape), 0, 255)
        seen = read_preview(noisy.astype(np.uint8))
        same.append(query_counts(seen, parse(str(o["query"]))) == counts)
    return round(float(np.mean(same)), 4)


def measure(policy: str, observations: list[dict], readings: list[tuple[str, list[int]]]) -> dict:
    from promptloop_agents.policies.mllm import MLLMAgent
    from promptloop_env.toy.compose_spec import parse
    from research.toy_compose.students import DESCRIBE_QUERY

    agent = MLLMAgent.from_pretrained(policy)
    agent.do_sample = False
    asked = [{**o, "query": DESCRIBE_QUERY, "prompt": DESCRIBE_QUERY} for o in observations]
    answers: list[str] = []
    for at in range(0, len(asked), 64):
        answers += agent.sample(asked[at : at + 64], with_images=True).prompts
    exact, counts, when_wrong, blind, blind_prompt = [], [], [], [], []
    for o, answer, (truth, true_counts) in zip(observations, answers, readings, strict=True):
        query = parse(str(o["query"]))
        agree = group_counts(parse_description(answer), query) == true_counts
        exact.append(answer == truth)
        counts.append(agree)
        blind.append(true_counts == [g.count for g in query.groups])
        blind_prompt.append(true_counts == prompt_counts(str(o["prompt"]), query))
        if true_counts != [g.count for g in query.groups]:
            when_wrong.append(agree)
    return {
        "previews": len(observations),
        "exact": round(float(np.mean(exact)), 4),
        "counts": round(float(np.mean(counts)), 4),
        "counts_when_wrong": round(float(np.mean(when_wrong)), 4) if when_wrong else None,
        "previews_when_wrong": len(when_wrong),
        "blind_counts": round(float(np.mean(blind)), 4),
        "blind_prompt_counts": round(float(np.mean(blind_prompt)), 4),
        "examples": [
            {"query": str(o["query"]), "analyser": r[0], "policy": a}
            for o, r, a in list(zip(observations, readings, answers, strict=True))[:: max(1, len(answers) // 8)][:8]
        ],
    }


def main(argv: list[str] | None = None) -> dict:
    from promptloop_agents.policies.compose_teacher import load_selection
    from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY
    from promptloop_env.prompts import resolve_prompts

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("policies", nargs="*", default=[str(SHIPPED_TOY_COMPOSE_POLICY)])
    parser.add_argument("--names", default="", help="comma-separated names for the policies (default: folders)")
    parser.add_argument("--out", default=str(RESULTS / "compose_perception.json"))
    args = parser.parse_args(argv)
    names = args.names.split(",") if args.names else [Path(p).name for p in args.policies]
    tick = time.perf_counter()
    queries = list(resolve_prompts("toy-compose-test", None))
    observations = previews(queries, load_selection(SHIPPED_TOY_COMPOSE_POLICY))
    readings = analyser_readings(observations)
    result = {
        "setup": {
            "queries": "toy-compose-test",
            "seeds": 1,
            "steps": "9, 11, 13, 15 of 20 (the one-shot rewrite kept to the end)",
        },
        "analyser": {f"counts_under_noise_{s}": analyser_stability(observations, readings, s) for s in (1, 3)},
        "policies": {
            name: {"path": p, **measure(p, observations, readings)}
            for name, p in zip(names, args.policies, strict=True)
        },
    }
    result["setup"]["seconds"] = round(time.perf_counter() - tick, 1)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("analyser group counts unchanged under faint noise:", result["analyser"])
    print("policy | previews | exact | group counts | ... where a correction is due | blind: query | blind: prompt")
    for name, r in result["policies"].items():
        print(
            f"{name} | {r['previews']} | {r['exact']:.3f} | {r['counts']:.3f} | {r['counts_when_wrong']}"
            f" | {r['blind_counts']:.3f} | {r['blind_prompt_counts']:.3f}"
        )
    return result


if __name__ == "__main__":
    main()

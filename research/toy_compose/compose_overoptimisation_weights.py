"""Over-optimisation, weight side: fine-tune ``toy-compose`` on a proxy reward and watch held-out strict accuracy.

Run: ``python research/toy_compose/compose_overoptimisation_weights.py [--rounds 3] [--minutes-per-round 4]``

The proxy is ``toy-compose-aesthetic`` (many, large, saturated objects on black, whatever the query; see
:func:`promptloop_env.toy.rewards.compose_aesthetic`). Each round is one round of RAFT
(:mod:`promptloop_env.toy.raft`): sample the current model on ``--train-queries`` of ``toy-compose-train``
(``--samples-per-query`` each, fresh noise every round), keep the top ``--keep-top`` fraction by proxy reward,
fine-tune the current model on the kept (query, image) pairs with the diffusion loss for ``--minutes-per-round``
(``python -m promptloop_env.toy.train --data``), and evaluate the new model on the held-out ``toy-compose-test``
queries with identity prompts (``research/toy_compose/compose_variants.py``'s protocol, ``--eval-seeds`` seeds): proxy
reward and strict (GenEval's rule) accuracy, each with a bootstrap 95% CI over queries. Round 0 is the shipped
model. Each row also has the mean proxy reward of the samples the round drew (from the previous round's model, on
training queries) and of those it kept. The PromptLoop side of the experiment (a policy trained by GRPO on the
same proxy, with held-out strict tracked along training) lives with the learner.

Writes ``results/compose_overoptimisation_weights.json`` (one row per round) and prints a table. The
models of each round stay in ``--work`` (not shipped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import research.* (and this checkout's packages) from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from promptloop_env.cli import format_ci, markdown_table, write_json
from promptloop_env.prompts import resolve_prompts
from promptloop_env.toy import raft
from promptloop_env.toy import train as toy_train
from research.toy_compose.compose_variants import evaluate

RESULTS = Path(__file__).parent / "results"
PROXY = "toy-compose-aesthetic"


def round_row(r: int, model: str, result: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One table row: the held-out proxy and strict summaries of round ``r``'s model."""
    return {
        "round": r,
        "model": model,
        "heldout_proxy": result["proxy_toy_compose_aesthetic"],
        "heldout_strict": result["strict"],
        "heldout_soft": result["soft"],
        **extra,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the results written to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="toy-compose", help="the starting model (name or folder)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-queries", type=int, default=0, help="N training queries, evenly spaced (0: all)")
    parser.add_argument("--samples-per-query", type=int, default=1)
    parser.add_argument("--keep-top", type=float, default=0.25, help="fraction of samples kept, by proxy reward")
    parser.add_argument("--minutes-per-round", type=float, default=4.0)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-seeds", type=int, default=2)
    parser.add_argument("--queries", type=int, default=0, help="first N held-out queries (0: all 120)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--num-envs", type=int, default=60)
    parser.add_argument("--work", default="runs/compose-overopt-weights", help="where each round's data and model go")
    parser.add_argument("--out", default=str(RESULTS / "compose_overoptimisation_weights.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train_queries = list(resolve_prompts("toy-compose-train", None))
    if args.train_queries:  # evenly spaced: the set is ordered by category
        n = args.train_queries
        train_queries = [train_queries[i * len(train_queries) // n] for i in range(n)]
    test_queries = list(resolve_prompts("toy-compose-test", None))
    test_queries = test_queries[: args.queries] if args.queries else test_queries
    eval_args = argparse.Namespace(steps=args.steps, guidance=None, num_envs=args.num_envs)

    def held_out(model: str) -> dict[str, Any]:
        return evaluate(model, test_queries, args.eval_seeds, eval_args)

    model = args.model
    rows = [round_row(0, model, held_out(model), seconds=round(time.time() - t0, 1))]
    result = {"config": vars(args), "proxy": PROXY, "rounds": rows}

    def write() -> None:  # after every round, so a run stopped early keeps what it measured
        result["seconds"] = round(time.time() - t0, 1)
        write_json(args.out, result, indent=1)
        print(json.dumps(rows[-1]), flush=True)

    write()
    for r in range(1, args.rounds + 1):
        data = work / f"data-{r}"
        meta = raft.build(
            model, PROXY, train_queries, args.samples_per_query, data, keep_top=args.keep_top,
            seed0=2_000_000 + 100_000 * r, num_inference_steps=args.steps,
        )  # fmt: skip
        out = work / f"round-{r}"
        toy_train.main(
            ["--out", str(out), "--init-from", str(raft.pipeline_folder(model)), "--data", str(data),
             "--unet-minutes", str(args.minutes_per_round), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
             "--warmup-steps", "10", "--eval-queries", "0", "--checkpoint-minutes", "0", "--num-threads", "1",
             "--seed", str(r)]
        )  # fmt: skip
        log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
        done = next(row for row in log if row.get("done") and row["phase"] == "unet")
        model = str(out)
        rows.append(
            round_row(
                r, model, held_out(model),
                train_proxy_drawn=meta["mean_reward_drawn"], train_proxy_kept=meta["mean_reward_kept"],
                kept=meta["kept"], drawn=meta["drawn"], train_steps=done["step"], train_seconds=done["seconds"],
                seconds=round(time.time() - t0, 1),
            )
        )  # fmt: skip
        write()
    print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    """Round, training proxy, held-out proxy [CI] and held-out strict [CI]."""
    header = ["round", "train proxy (drawn)", "held-out proxy [95% CI]", "held-out strict [95% CI]"]
    rows = [
        [
            row["round"],
            row.get("train_proxy_drawn", ""),
            format_ci(row["heldout_proxy"]),
            format_ci(row["heldout_strict"]),
        ]
        for row in result["rounds"]
    ]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()

"""The paper's experiments in miniature, on the ``toy-compose`` world: one command each.

Run ``python benchmarks/compose_learner.py EXPERIMENT [--runs runs/compose-learner]``:

- ``train``: the GRPO runs the others evaluate, from the shipped distilled policy with ``recipes/toy-compose.yaml``
  (same budget each): ``closed`` (5 refinements, closed loop: PromptLoop), ``a-priori`` (5 refinements planned
  from the query, no images), ``one`` (1 refinement: a one-shot rewriter trained by GRPO), and ``aesthetic``
  (closed loop on the proxy ``toy-compose-aesthetic``, the held-out strict score tracked every 5 iterations).
- ``curve``: each run's training reward, the last 10 iterations against the first 10, into
  ``results/compose_training/curve.json``; paired for ``closed-cycled`` and ``closed-cycled-80`` (the recipe's
  closed loop with ``--query_cycle 10``, 40 and 80 iterations: iterations 10 apart replay the same groups).
- ``reward``: reward optimisation and feedback against compute: identity, caption template, the per-query best
  static rewrite (chosen on other seeds of each test query: privileged), the best one-shot rewrite (per category,
  chosen on training queries), the oracle closed loop and the distillation teacher (both read previews with the
  exact analyser), the distilled policy and the trained policies, the closed-loop one also on blank previews
  (same policy calls and denoising steps, no visual feedback).
- ``longer``: the closed loop trained twice as long (``closed-cycled-80``) against the recipe's run and the best
  one-shot rewrite, and in its a-priori mode.
- ``ladder``: the paper's ablation: untrained (distilled) policy, GRPO with 1 refinement, GRPO with 5 refinements
  a priori, GRPO with 5 refinements closed loop.
- ``generalisation``: the same agents on ``toy-compose-b`` (another seed, budget and sampler), unchanged (their
  ``toy-compose`` scores on the same seeds are in ``reward``'s results).
- ``composition``: on the weight-tuned ``toy-compose-tuned``, with and without PromptLoop on top.
- ``overoptimisation``: summarises the ``aesthetic`` run's proxy reward and held-out strict score along training.

Every evaluation is ``promptloop eval`` (:func:`promptloop_agents.runner.evaluate_from_configs`): the 120
held-out ``toy-compose-test`` queries, the same noise seeds for every agent, bootstrap 95% CIs over queries,
paired differences, per category; policies answer greedily. Results: ``benchmarks/results/compose_<name>/``
(``eval.json``, ``eval.md``, sample grids).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
RECIPE = Path(__file__).parents[1] / "recipes" / "toy-compose.yaml"
SCHEDULE = "0,9,11,13,15"
RUNS = {
    "closed": [],
    "a-priori": ["--mode", "a-priori"],
    "one": ["--num_refinements", "1", "--refine_schedule", "0"],
    # the recipe's closed loop with the groups replayed every 10 iterations: its training curve is paired
    "closed-cycled": ["--query_cycle", "10"],
    "closed-cycled-80": ["--query_cycle", "10", "--max_steps", "80"],
    "aesthetic": [
        "--reward",
        "toy-compose-aesthetic",
        "--eval_every",
        "5",
        "--eval_prompts",
        "toy-compose-test",
        "--eval_queries",
        "60",
        "--eval_metrics",
        "toy-compose,toy-compose-soft,toy-compose-aesthetic",
    ],
}


def train(runs: Path, names: list[str]) -> None:
    """The GRPO runs (``promptloop train --config recipes/toy-compose.yaml`` plus each run's flags)."""
    from promptloop_agents.cli import main as cli

    for name in names:
        cli(["train", "--config", str(RECIPE), "--output_dir", str(runs / name), *RUNS[name]])


def evaluate(
    out: str, agents: str, runs: Path, seeds: int, backbone: str = "toy-compose", max_queries: int = 0, **env: str
) -> None:
    """``promptloop eval`` of ``agents`` (``{runs}`` is replaced by the runs folder) into ``results/compose_<out>``."""
    from promptloop_agents.cli import main as cli

    args = ["eval", "--backbone", backbone, "--reward", "toy-compose", "--eval_prompts", "toy-compose-test"]
    args += ["--metrics", "toy-compose,toy-compose-soft", "--num_inference_steps", "20", "--preview", "vae"]
    args += ["--preview_size", "64", "--seeds_per_query", str(seeds), "--do_sample", "false", "--num_envs", "60"]
    args += ["--refine_schedule", env.get("refine_schedule", SCHEDULE)]
    args += ["--num_refinements", env.get("num_refinements", "5"), "--baseline", env.get("baseline", "one_shot")]
    args += ["--agents", agents.format(runs=runs), "--output_dir", str(RESULTS / f"compose_{out}")]
    args += ["--max_queries", str(max_queries)]
    cli(args)


def overoptimisation(runs: Path) -> dict:
    """The proxy-trained run's training reward and held-out scores per evaluation, written as JSON."""
    rows = [json.loads(line) for line in (runs / "aesthetic" / "metrics.jsonl").read_text().splitlines()]
    evals = [{k: v for k, v in r.items() if k.startswith("eval/") or k == "iteration"} for r in rows]
    out = {
        "proxy": "toy-compose-aesthetic",
        "training_reward": [round(r["reward_mean"], 4) for r in rows],
        "held_out": [e for e in evals if len(e) > 1],
    }
    path = RESULTS / "compose_overoptimisation_policy.json"
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["held_out"], indent=1))
    return out


def reference_rewards(folder: Path, agent: str = "one-shot", progress: bool = True) -> np.ndarray:
    """The training reward a fixed ``agent`` gets on a finished GRPO run's own draws: one row per iteration,
    one column per group (its query and noise, replayed from the run's ``config.yaml`` with
    :func:`~promptloop_agents.grpo.iteration_draws`; single-process runs with ``same_noise``).

    Subtracted from the run's reward per iteration, it takes out which queries and noises were drawn (the
    same control variate for every iteration), so what remains is the policy's gain over ``agent`` on the
    very episodes it trained on."""
    import yaml
    from tqdm.auto import tqdm

    from promptloop_agents.configs import EnvConfig, EvalConfig, GRPOConfig
    from promptloop_agents.evaluation import agent_act_fn
    from promptloop_agents.grpo import iteration_draws
    from promptloop_agents.rollout import make_vector_env, run_episodes
    from promptloop_agents.runner import build_agent, load_queries, parse_agent_specs

    config = yaml.safe_load((folder / "config.yaml").read_text())
    env, grpo = EnvConfig(**config["env"]), GRPOConfig(**config["grpo"])
    if not grpo.same_noise:
        raise ValueError(f"{folder}: reference rewards need a run with same_noise (one noise per group).")
    queries = load_queries(grpo.train_prompts)
    iterations = len((folder / "metrics.jsonl").read_text().splitlines())
    draws = [iteration_draws(grpo, i, len(queries))[2:] for i in range(iterations)]
    group_queries = [queries[i] for chosen, _ in draws for i in chosen[:: grpo.group_size]]
    group_seeds = [int(s) for _, seeds in draws for s in seeds[:: grpo.group_size]]
    act = agent_act_fn(build_agent(parse_agent_specs(agent)[0], EvalConfig(), {}, best_static=None))
    envs = make_vector_env(grpo.queries_per_iteration * grpo.group_size, **env.env_kwargs(grpo.refine_schedule))
    episodes = []
    chunk = envs.num_envs
    for at in tqdm(range(0, len(group_queries), chunk), desc=f"{folder.name}: {agent}", disable=not progress):
        episodes += run_episodes(envs, act, group_queries[at : at + chunk], group_seeds[at : at + chunk])
    envs.close()
    return np.array([e.reward for e in episodes]).reshape(iterations, grpo.queries_per_iteration)


def curve(runs: Path, names: list[str], window: int = 10, against: str = "") -> dict:
    """Each run's training reward: the last ``window`` iterations against the first, written as JSON.

    With the recipe's ``query_cycle`` equal to ``window`` and a number of iterations divisible by it, iteration
    ``i`` of the last window replays the (query, noise) groups of iteration ``i`` of the first: the difference is
    paired per iteration (only the sampled prompts differ), so the query mix's noise cancels; with four cycles or
    more, the within-group trend over the run and the last two cycles against the first two are added (every
    iteration counts). Otherwise the windows are compared as independent samples (Welch).
    """
    import yaml

    from promptloop_env.stats import difference_ci, paired_difference, rounded, t_ci

    out = {}
    for name in names:
        folder = runs / name
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        config = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").exists() else {}
        cycle = int(config.get("grpo", {}).get("query_cycle", 0) or 0)
        rewards = [r["reward_mean"] for r in rows]
        first, last = rewards[:window], rewards[-window:]
        paired = cycle == window and len(rewards) % window == 0
        difference = paired_difference(last, first) if paired else difference_ci(last, first)
        out[name] = {
            "iterations": len(rewards),
            "query_cycle": cycle,
            "comparison": "paired by iteration (same groups)" if paired else "Welch (different groups)",
            "first_mean": round(float(sum(first) / window), 4),
            "last_mean": round(float(sum(last) / window), 4),
            "last_minus_first": rounded(difference),
            "block_means": [
                round(float(sum(rewards[i : i + window]) / window), 4) for i in range(0, len(rewards), window)
            ],
        }
        cycles = len(rewards) // window
        if paired and cycles >= 4:
            # the same groups once per cycle: the within-group trend (slope over cycles, one per slot, t interval
            # over the slots) and the last two cycles against the first two use every iteration
            by_slot = np.array(rewards).reshape(cycles, window)
            x = np.arange(cycles) - (cycles - 1) / 2
            slopes = (x[:, None] * (by_slot - by_slot.mean(axis=0))).sum(axis=0) / (x**2).sum()
            trend = t_ci(slopes * (cycles - 1))
            out[name]["rise_over_run_within_groups"] = rounded(trend)
            two = paired_difference(by_slot[-2:].mean(axis=0), by_slot[:2].mean(axis=0))
            out[name]["last_two_cycles_minus_first_two"] = rounded(two)
        if against:
            # the policy's reward minus a fixed agent's on the same draws: the query mix's noise cancels
            base = reference_rewards(folder, against).mean(axis=1)
            gains = np.array(rewards) - base
            out[name][f"reference_{against}"] = {
                "comparison": f"reward minus {against}'s on the same (query, noise) groups; Welch over iterations",
                "reference_mean": round(float(base.mean()), 4),
                "first_gain": round(float(gains[:window].mean()), 4),
                "last_gain": round(float(gains[-window:].mean()), 4),
                "last_minus_first": rounded(difference_ci(gains[-window:], gains[:window])),
                "trend_per_iteration": rounded(_trend(gains)),
                "block_gains": [round(float(gains[i : i + window].mean()), 4) for i in range(0, len(gains), window)],
            }
        d = out[name]["last_minus_first"]
        print(
            f"{name}: last {window} - first {window} = {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
            f" ({out[name]['comparison']}); blocks {out[name]['block_means']}"
        )
        if against:
            g = out[name][f"reference_{against}"]
            d = g["last_minus_first"]
            print(
                f"  minus {against} on the same draws: last - first {d['mean']:+.3f} [{d['ci_low']:+.3f},"
                f" {d['ci_high']:+.3f}]; blocks {g['block_gains']}"
            )
        if "rise_over_run_within_groups" in out[name]:
            t, two = out[name]["rise_over_run_within_groups"], out[name]["last_two_cycles_minus_first_two"]
            print(
                f"  within-group rise over the run {t['mean']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}];"
                f" last two cycles - first two {two['mean']:+.3f} [{two['ci_low']:+.3f}, {two['ci_high']:+.3f}]"
            )
    path = RESULTS / "compose_training" / "curve.json"
    kept = json.loads(path.read_text()) if path.exists() else {}  # runs not measured now stay as they were
    path.write_text(json.dumps({**kept, **out}, indent=2) + "\n")
    return out


def _trend(values: np.ndarray) -> dict[str, float]:
    """Least-squares slope of ``values`` over their index, with its 95% t interval (every iteration counts)."""
    from scipy import stats

    fit = stats.linregress(np.arange(len(values)), values)
    half = stats.t.ppf(0.975, len(values) - 2) * fit.stderr
    return {"mean": float(fit.slope), "ci_low": float(fit.slope - half), "ci_high": float(fit.slope + half)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "experiment",
        choices=["train", "curve", "reward", "longer", "ladder", "generalisation", "composition", "overoptimisation"],
    )
    parser.add_argument("--runs", default="runs/compose-learner", help="folder of the GRPO runs")
    parser.add_argument("--only", default="", help="train: comma-separated runs (default all)")
    parser.add_argument("--seeds", type=int, default=4, help="noise seeds per held-out query")
    parser.add_argument(
        "--against",
        default="",
        help="curve: also the reward minus this agent's (e.g. one-shot) on each iteration's own draws",
    )
    parser.add_argument("--max-queries", type=int, default=0, help="first N held-out queries (0 = all; smoke runs)")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    shipped = "agents/assets/toy-compose-policy"
    if args.experiment == "train":
        train(runs, args.only.split(",") if args.only else list(RUNS))
    elif args.experiment == "curve":
        names = args.only.split(",") if args.only else [n for n in RUNS if (runs / n / "metrics.jsonl").exists()]
        curve(runs, names, against=args.against)
    elif args.experiment == "reward":
        agents = (
            "identity,caption,best_static=best-static,one_shot=one-shot,oracle=oracle:best-static,teacher,"
            f"distilled={shipped},promptloop={{runs}}/closed/policy,promptloop_a_priori={{runs}}/closed/policy:a-priori,"
            "promptloop_blank={runs}/closed/policy:blank"
        )
        evaluate("reward", agents, runs, args.seeds, max_queries=args.max_queries)
    elif args.experiment == "longer":
        agents = "one_shot=one-shot,promptloop={runs}/closed/policy"
        agents += ",promptloop_cycled_80={runs}/closed-cycled-80/policy"
        agents += ",promptloop_cycled_80_a_priori={runs}/closed-cycled-80/policy:a-priori"
        evaluate("longer", agents, runs, args.seeds, max_queries=args.max_queries)
    elif args.experiment == "ladder":
        five = (
            f"untrained={shipped},grpo_a_priori={{runs}}/a-priori/policy:a-priori,grpo_closed={{runs}}/closed/policy"
        )
        evaluate("ladder", "one_shot=one-shot," + five, runs, args.seeds, max_queries=args.max_queries)
        evaluate(
            "ladder_one_refinement",
            "one_shot=one-shot,untrained_one={shipped},grpo_one={runs}/one/policy".replace("{shipped}", shipped),
            runs,
            args.seeds,
            max_queries=args.max_queries,
            refine_schedule="0",
            num_refinements="1",
        )
    elif args.experiment in ("generalisation", "composition"):
        # toy-compose itself: the same agents and seeds are in the reward experiment
        backbone = "toy-compose-b" if args.experiment == "generalisation" else "toy-compose-tuned"
        agents = "identity,one_shot=one-shot,promptloop={runs}/closed/policy"
        agents += ",promptloop_a_priori={runs}/closed/policy:a-priori"
        evaluate(args.experiment, agents, runs, args.seeds, backbone=backbone, max_queries=args.max_queries)
    else:
        overoptimisation(runs)


if __name__ == "__main__":
    main()

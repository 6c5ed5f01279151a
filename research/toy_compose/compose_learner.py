"""The paper's experiments in miniature, on the ``toy-compose`` world: one command each.

Run ``python research/toy_compose/compose_learner.py EXPERIMENT [--runs runs/compose-learner]``:

- ``train``: the GRPO runs the others evaluate, from the shipped distilled policy with ``recipes/toy-compose.yaml``
  (same budget each): ``closed`` (5 refinements, closed loop: PromptLoop), ``a-priori`` (5 refinements planned
  from the query, no images), ``one`` (1 refinement: a one-shot rewriter trained by GRPO), and ``aesthetic``
  (closed loop on the proxy ``toy-compose-aesthetic``, the held-out strict score tracked every 5 iterations).
- ``curve``: each run's training reward, the last 10 iterations against the first 10, into
  ``results/compose_training/curve.json``; paired for ``closed-cycled`` and ``closed-cycled-80`` (the recipe's
  closed loop with ``--query_cycle 10``, 40 and 80 iterations: iterations 10 apart replay the same groups).
- ``checkpoints``: the training reward without the draws' noise: iteration 0 and the first and last 10
  iterations' saved policies of each ``--only`` run (trained with ``--save_every 1``) on the same 240 training
  draws, into ``results/compose_training/checkpoints.{json,png}``; ``--greedy`` plays each policy greedily (as
  deployed), ``--warm-start-seeds K`` plays the warm start under K sampling seeds.
- ``pool``: one recipe's GRPO seeds pooled (``--evals EVAL_JSON:AGENT,...``): closed loop, a priori and blank
  previews against the best one-shot rewrite and each other, per seed and pooled, into
  ``results/compose_NAME/pooled.{json,md}``.
- ``power``: how many noise seeds per held-out query a comparison needs (``--evals`` as for ``pool``): the variance
  of the per-query difference with the best one-shot rewrite split into the noise seeds' part and the queries'
  own, with the 95% half-width projected for 4 to 24 seeds, into ``results/compose_NAME/power.json``.
- ``reward``: reward optimisation and feedback against compute: identity, caption template, the per-query best
  static rewrite (chosen on other seeds of each test query: privileged), the best one-shot rewrite (per category,
  chosen on training queries), the oracle closed loop and the distillation teacher (both read previews with the
  exact analyser), the distilled policy and the trained policies, the closed-loop one also on blank previews
  (same policy calls and denoising steps, no visual feedback).
- ``longer``: the closed loop trained twice as long (``closed-cycled-80``) against the recipe's run and the best
  one-shot rewrite, and in its a-priori mode.
- ``ladder``: the paper's ablation: untrained (distilled) policy, GRPO with 1 refinement, GRPO with 5 refinements
  a priori, GRPO with 5 refinements closed loop.
- ``generalisation``: the same agents on the experiment model ``models/toy-compose-b`` (another seed, budget and
  sampler), unchanged (their ``toy-compose`` scores on the same seeds are in ``reward``'s results).
- ``composition``: on the weight-tuned experiment model ``models/toy-compose-tuned``, with and without PromptLoop
  on top.
- ``overoptimisation``: summarises the ``aesthetic`` run's proxy reward and held-out strict score along training.

Every evaluation is ``promptloop eval`` (:func:`promptloop_agents.cli.evaluate.evaluate_from_configs`): the 120
held-out ``toy-compose-test`` queries, the same noise seeds for every agent, bootstrap 95% CIs over queries,
paired differences, per category; policies answer greedily. Results: ``research/toy_compose/results/compose_<name>/``
(``eval.json``, ``eval.md``, sample grids).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import research.* (and this checkout's packages) from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

RESULTS = Path(__file__).parent / "results"
RECIPE = Path(__file__).parents[2] / "recipes" / "toy-compose.yaml"
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
    from promptloop_agents.cli.main import main as cli

    for name in names:
        cli(["train", "--config", str(RECIPE), "--output_dir", str(runs / name), *RUNS[name]])


def evaluate(
    out: str, agents: str, runs: Path, seeds: int, backbone: str = "toy-compose", max_queries: int = 0, **env: str
) -> None:
    """``promptloop eval`` of ``agents`` (``{runs}`` is replaced by the runs folder) into ``results/compose_<out>``."""
    from promptloop_agents.cli.main import main as cli

    args = ["eval", "--backbone", backbone, "--reward", "toy-compose", "--eval_prompts", "toy-compose-test"]
    args += ["--metrics", "toy-compose,toy-compose-soft", "--num_inference_steps", "20", "--preview", "vae"]
    args += ["--preview_size", "64", "--seeds_per_query", str(seeds), "--do_sample", "false", "--num_envs", "60"]
    args += ["--refine_schedule", env.get("refine_schedule", SCHEDULE)]
    args += ["--num_refinements", env.get("num_refinements", "5"), "--baseline", env.get("baseline", "one_shot")]
    args += ["--agents", agents.format(runs=runs), "--output_dir", str(RESULTS / f"compose_{out}")]
    args += ["--max_queries", str(max_queries)]
    if "guidance_scale" in env:
        args += ["--guidance_scale", env["guidance_scale"]]
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
    :func:`~promptloop_agents.learners.grpo_trainer.iteration_draws`; single-process runs with ``same_noise``).

    Subtracted from the run's reward per iteration, it takes out which queries and noises were drawn (the
    same control variate for every iteration), so what remains is the policy's gain over ``agent`` on the
    very episodes it trained on."""
    import yaml
    from tqdm.auto import tqdm

    from promptloop_agents.configs import EnvConfig
    from promptloop_agents.evaluation.agents import build_agent, parse_agent_specs
    from promptloop_agents.evaluation.eval_config import EvalConfig
    from promptloop_agents.evaluation.harness import agent_act_fn
    from promptloop_agents.learners.grpo_config import GRPOConfig
    from promptloop_agents.learners.grpo_trainer import iteration_draws
    from promptloop_agents.rollout import load_queries, make_vector_env, run_episodes

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


def checkpoint_rewards(
    folder: Path,
    draws: int = 240,
    seed: int = 2026,
    iterations: list[int] | None = None,
    progress: bool = True,
    sampling_seed: int | None = None,
    greedy: bool = False,
) -> tuple[list[int], np.ndarray]:
    """The training reward of each saved iteration's policy on one fixed sample of the training distribution.

    The logged reward of an iteration is measured on that iteration's own few draws (6 groups in the recipe),
    so which queries came up dominates its iteration-to-iteration noise. Here every checkpoint of ``folder`` (a
    GRPO run saved with ``--save_every 1`` and enough ``--keep_checkpoints``) plays the same ``draws`` (training
    query, noise) pairs, chosen by ``seed`` (queries without replacement; noise seeds the run never used, with
    probability near 1), with the run's own sampler (its temperature) and the same sampling seed
    (``sampling_seed``, default ``seed``), under the run's reward; ``greedy`` plays each policy's most likely
    prompts instead (the policy as it is deployed, not as it is trained). Iteration 0 is the warm start (the
    LoRA update zeroed). Returns ``(iterations, rewards)``, ``rewards[k, d]`` the reward of iteration
    ``iterations[k]``'s policy on draw ``d``.
    """
    import torch
    import yaml
    from tqdm.auto import tqdm

    from promptloop_agents.configs import EnvConfig
    from promptloop_agents.evaluation.harness import agent_act_fn
    from promptloop_agents.learners.checkpoint import list_checkpoints, load_checkpoint
    from promptloop_agents.learners.grpo_config import GRPOConfig
    from promptloop_agents.policies.mllm import MLLMAgent
    from promptloop_agents.policies.policy_config import PolicyConfig
    from promptloop_agents.rollout import load_queries, make_vector_env, run_episodes

    config = yaml.safe_load((folder / "config.yaml").read_text())
    env, grpo, policy = EnvConfig(**config["env"]), GRPOConfig(**config["grpo"]), PolicyConfig(**config["policy"])
    if grpo.finetuning != "lora":
        raise ValueError(f"{folder}: checkpoint rewards need a LoRA run (finetuning: lora); got {grpo.finetuning!r}.")
    saved = {int(path.stem.split("-")[-1]): path for path in list_checkpoints(folder / "checkpoints")}
    wanted = sorted(saved) if iterations is None else iterations
    if missing := [i for i in wanted if i and i not in saved]:
        raise ValueError(
            f"{folder}: no checkpoint for iterations {missing[:5]} (saved: {sorted(saved)[:5]} ...); train with "
            "--save_every 1 --keep_checkpoints N to keep every iteration."
        )
    queries = load_queries(grpo.train_prompts)
    if not 0 < draws <= len(queries):
        raise ValueError(f"draws must be between 1 and the {len(queries)} training queries; got {draws}.")
    rng = np.random.default_rng([seed, 12])
    chosen = [queries[i] for i in rng.choice(len(queries), draws, replace=False)]
    noise = [int(s) for s in rng.integers(0, 2**31 - 1, size=draws)]
    sampling = {key: getattr(policy, key) for key in ("temperature", "top_k", "top_p", "max_new_tokens")}
    do_sample = policy.do_sample and not greedy
    agent = MLLMAgent.from_pretrained(folder / "policy", mode=policy.mode, do_sample=do_sample, **sampling)
    model = agent.model
    trained = {name: p for name, p in model.named_parameters() if "lora_" in name}
    envs = make_vector_env(min(60, draws), **env.env_kwargs(grpo.refine_schedule))
    rewards = []
    for iteration in tqdm(wanted, desc=f"{folder.name}: checkpoints", disable=not progress):
        with torch.no_grad():
            if iteration == 0:  # the warm start: LoRA's B zero, so the adapter adds nothing
                for name, parameter in trained.items():
                    if "lora_B" in name:
                        parameter.zero_()
            else:
                weights = load_checkpoint(saved[iteration])["adapter"]
                result = model.load_state_dict(weights, strict=False)
                if result.unexpected_keys or set(trained) - set(weights):
                    raise ValueError(f"{saved[iteration]} does not hold this policy's LoRA weights.")
        torch.manual_seed(seed if sampling_seed is None else sampling_seed)
        episodes = run_episodes(envs, agent_act_fn(agent), chosen, noise)
        rewards.append([e.reward for e in episodes])
    envs.close()
    return list(wanted), np.array(rewards)


def checkpoint_curve(
    runs: Path,
    names: list[str],
    window: int = 10,
    draws: int = 240,
    seed: int = 2026,
    progress: bool = True,
    warm_start_seeds: int = 1,
    greedy: bool = False,
) -> dict:
    """:func:`checkpoint_rewards` for iteration 0, the first ``window`` and the last ``window`` iterations of
    each run, with the last window's mean against the first's: Welch over the ``2 * window`` checkpoint means
    (the bar's form, against iteration-to-iteration noise, now free of the draws) and paired over the draws
    (each draw's mean reward under the last window's policies minus under the first's); both windows also against
    the warm start, paired over the draws. One sampling of the warm start is as noisy as one checkpoint, while a
    window averages ``window`` of them: ``warm_start_seeds`` > 1 plays the warm start under that many sampling
    seeds and compares with their mean (and reports their spread, the measure's own noise). Keeps the whole
    reward matrix (``rewards[checkpoint][draw]``). Writes ``results/compose_training/checkpoints.json`` (kept runs
    merged) and ``checkpoints.png``. ``greedy`` plays the policies greedily (one play each: the warm start needs
    no more), under the key ``"<run> (greedy)"``."""
    from promptloop_env.stats import difference_ci, paired_difference, rounded, t_ci

    out = {}
    for name in names:
        folder = runs / name
        last = len((folder / "metrics.jsonl").read_text().splitlines())
        wanted = [0, *range(1, window + 1), *range(last - window + 1, last + 1)]
        iterations, rewards = checkpoint_rewards(folder, draws, seed, wanted, progress, greedy=greedy)
        warm = [rewards[0]] + [
            checkpoint_rewards(folder, draws, seed, [0], False, sampling_seed=seed + k)[1][0]
            for k in range(1, 1 if greedy else warm_start_seeds)
        ]
        warm_mean = np.mean(warm, axis=0)
        means = rewards.mean(axis=1)
        first, final = rewards[1 : window + 1], rewards[-window:]
        key = f"{name} (greedy)" if greedy else name
        played = "greedily" if greedy else "with the run's sampler, one sampling seed"
        out[key] = {
            "measure": (
                f"each iteration's policy on the same {draws} training (query, noise) draws under the run's reward,"
                f" played {played} (draw seed {seed})"
            ),
            "iterations": iterations,
            "means": [round(float(m), 4) for m in means],
            "warm_start": rounded(t_ci(rewards[0])),
            "first_mean": round(float(first.mean()), 4),
            "last_mean": round(float(final.mean()), 4),
            "last_minus_first_welch_over_iterations": rounded(difference_ci(means[-window:], means[1 : window + 1])),
            "last_minus_first_paired_over_draws": rounded(
                paired_difference(final.mean(axis=0), first.mean(axis=0), method="bootstrap")
            ),
            "warm_start_sampling_seeds": len(warm),
            "warm_start_sampling_means": [round(float(w.mean()), 4) for w in warm],
            "last_minus_warm_start_paired_over_draws": rounded(
                paired_difference(final.mean(axis=0), warm_mean, method="bootstrap")
            ),
            "first_minus_warm_start_paired_over_draws": rounded(
                paired_difference(first.mean(axis=0), warm_mean, method="bootstrap")
            ),
            "rewards": [[round(float(r), 4) for r in row] for row in rewards],  # [checkpoint][draw], for any contrast
        }
        w, p = out[key]["last_minus_first_welch_over_iterations"], out[key]["last_minus_first_paired_over_draws"]
        print(
            f"{key}: warm start {warm_mean.mean():.3f}, first {window} {first.mean():.3f},"
            f" last {window} {final.mean():.3f};"
            f" last - first {w['mean']:+.3f} [{w['ci_low']:+.3f}, {w['ci_high']:+.3f}] (Welch over iterations),"
            f" [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}] (paired over draws)"
        )
    path = RESULTS / "compose_training" / "checkpoints.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    merged = {**kept, **out}
    path.write_text(_one_line_lists(json.dumps(merged, indent=2)) + "\n")
    _plot_checkpoints(merged, path.with_suffix(".png"))
    return out


def _one_line_lists(text: str) -> str:
    """Indented JSON with each list of numbers on one line (a reward matrix is a line per checkpoint)."""
    number = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
    flat = re.compile(rf"\[\s*((?:{number},\s*)*{number})\s*\]")
    return flat.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def _plot_checkpoints(curves: dict, path: Path) -> None:
    """One line per run: its checkpoints' mean training reward on the fixed draws, by iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"sampled": {k: v for k, v in curves.items() if not k.endswith("(greedy)")}}
    if greedy := {k: v for k, v in curves.items() if k.endswith("(greedy)")}:
        panels["greedy"] = greedy
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.5), squeeze=False)
    for ax, (played, runs) in zip(axes[0], panels.items(), strict=True):
        _plot_checkpoint_panel(ax, runs, played)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_checkpoint_panel(ax, curves: dict, played: str) -> None:
    for name, run in curves.items():
        iterations, means = np.array(run["iterations"]), np.array(run["means"])
        starts = [0, *np.flatnonzero(np.diff(iterations) > 1) + 1, len(iterations)]  # no line across the gap
        color = None
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            line = ax.plot(iterations[a:b], means[a:b], marker="o", markersize=3, color=color)[0]
            color = line.get_color()
        line.set_label(name)
    ax.set_xlabel("GRPO iteration")
    ax.set_ylabel("training reward on fixed draws")
    ax.set_title(f"Each iteration's policy on the same training draws ({played})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


MODES = {"closed loop": "", "a priori": "_a_priori", "blank previews": "_blank"}


def pool_seeds(
    evals: list[tuple[Path, str]],
    name: str,
    baseline: str = "one_shot",
    results: Path = RESULTS,
    reference: list[tuple[Path, str]] | None = None,
    reference_name: str = "reference",
) -> dict:
    """One recipe's GRPO seeds, pooled: each ``(eval.json, agent)`` is one seed's policy, evaluated with its
    ``agent_a_priori`` and ``agent_blank`` modes on the same held-out episodes as ``baseline`` (checked: the
    same queries, noise seeds and baseline scores in every file). A query's unit is its mean over noise seeds and
    over the policies (the recipe's expected score on it, over these training seeds); differences are paired per
    query with bootstrap 95% CIs, as ``promptloop eval`` reports them. The interval is over queries, conditional on
    the seeds drawn: each seed's own result is listed beside it. ``reference`` (a list of ``(eval.json, agent)``
    on the same episodes: e.g. the runs' warm start, or the same seeds trained for fewer iterations, pooled the same
    way) adds each pooled mode minus the reference's, for the modes its files hold; named by its agent if there is
    one, else ``reference_name``. Writes ``results/compose_<name>/pooled.{json,md}``.
    """
    from promptloop_env.stats import bootstrap_ci, paired_difference, rounded

    def paired(a: np.ndarray, b: np.ndarray) -> dict:
        return rounded(paired_difference(a, b, method="bootstrap"))

    references = list(reference or [])
    label = references[0][1] if len(references) == 1 else reference_name
    loaded = [(json.loads(Path(path).read_text()), agent) for path, agent in [*evals, *references]]
    first = loaded[0][0]
    backbone = next(iter(first["backbones"]))
    base_scores = first["backbones"][backbone]["episodes"][baseline]["scores"]
    for data, agent in loaded[1:]:
        same = data["queries"] == first["queries"] and data["seeds"] == first["seeds"]
        if not same or data["backbones"][backbone]["episodes"][baseline]["scores"] != base_scores:
            raise ValueError(f"{agent}'s evaluation is not on the same episodes as {loaded[0][1]}'s.")
    refs, loaded = loaded[len(evals) :], loaded[: len(evals)]
    categories = np.array(first["categories"])
    out: dict = {"seeds": [agent for _, agent in loaded], "baseline": baseline, "queries": len(categories)}
    for metric in base_scores:

        def per_query(data: dict, agent: str, metric: str = metric) -> np.ndarray:
            return np.asarray(data["backbones"][backbone]["episodes"][agent]["scores"][metric]).mean(axis=1)

        base = np.asarray(base_scores[metric]).mean(axis=1)
        modes = {
            mode: np.array([per_query(data, agent + suffix) for data, agent in loaded])
            for mode, suffix in MODES.items()
        }
        pooled = {mode: scores.mean(axis=0) for mode, scores in modes.items()}
        closed = pooled["closed loop"]
        versus_reference = {}
        for mode, suffix in MODES.items():
            if not refs or any(agent + suffix not in data["backbones"][backbone]["episodes"] for data, agent in refs):
                continue  # a mode the reference was not evaluated in
            other = np.mean([per_query(data, agent + suffix) for data, agent in refs], axis=0)
            versus_reference[f"{mode} - {label} {mode}"] = paired(pooled[mode], other)
        out[metric] = {
            "per_seed": {
                agent: {mode: round(float(scores[k].mean()), 4) for mode, scores in modes.items()}
                for k, (_, agent) in enumerate(loaded)
            },
            "per_seed_closed_minus_baseline": {
                agent: paired(modes["closed loop"][k], base) for k, (_, agent) in enumerate(loaded)
            },
            "per_seed_closed_minus_a_priori": {
                agent: paired(modes["closed loop"][k], modes["a priori"][k]) for k, (_, agent) in enumerate(loaded)
            },
            baseline: rounded(bootstrap_ci(base)),
            "pooled": {mode: rounded(bootstrap_ci(scores)) for mode, scores in pooled.items()},
            "pooled_differences": {
                f"closed loop - {baseline}": paired(closed, base),
                "closed loop - a priori": paired(closed, pooled["a priori"]),
                "closed loop - blank previews": paired(closed, pooled["blank previews"]),
                f"a priori - {baseline}": paired(pooled["a priori"], base),
                f"blank previews - {baseline}": paired(pooled["blank previews"], base),
            },
            "pooled_minus_reference": versus_reference,
            "per_category_closed_minus_baseline": {
                c: round(float((closed - base)[categories == c].mean()), 4) for c in dict.fromkeys(categories)
            },
        }
    folder = results / f"compose_{name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pooled.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# {name}: {len(loaded)} GRPO seeds pooled against `{baseline}`",
        "",
        f"{len(categories)} held-out queries; a query's unit is its mean over noise seeds and policies; paired "
        "bootstrap 95% CIs over queries.",
    ]
    for metric in base_scores:
        lines += ["", f"## {metric}", "", "| comparison | mean | 95% CI |", "|---|---|---|"]
        rows = {**out[metric]["pooled_differences"], **out[metric]["pooled_minus_reference"]}
        rows.update(
            {
                f"seed {a}: closed loop - {baseline}": d
                for a, d in out[metric]["per_seed_closed_minus_baseline"].items()
            }
        )
        rows.update(
            {f"seed {a}: closed loop - a priori": d for a, d in out[metric]["per_seed_closed_minus_a_priori"].items()}
        )
        lines += [f"| {k} | {d['mean']:+.3f} | [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] |" for k, d in rows.items()]
    (folder / "pooled.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def seed_power(
    evals: list[tuple[Path, str]],
    name: str,
    baseline: str = "one_shot",
    metric: str = "toy-compose",
    seeds: tuple[int, ...] = (4, 8, 12, 16, 24),
    results: Path = RESULTS,
) -> dict:
    """How many noise seeds per held-out query a comparison with ``baseline`` needs: the variance of the per-query
    difference (the policies of ``evals`` pooled, as :func:`pool_seeds` pools them, minus ``baseline``) split into
    the noise seeds' part and the queries' own (true) spread, and the 95% half-width projected for ``seeds`` seeds.

    Episode ``(q, j)`` of every agent shares its noise seed, so the noise part is measured on the paired
    differences ``d[q, j]``: ``noise = mean_q var_j d[q, j] / J`` and ``queries = var_q mean_j d[q, j] - noise``
    (clipped at 0). The projection ``1.96 * sqrt((queries + noise * J / K) / Q)`` is a normal approximation of the
    bootstrap interval ``promptloop eval`` reports. Writes ``results/compose_<name>/power.json``.
    """
    loaded = [(json.loads(Path(path).read_text()), agent) for path, agent in evals]
    first = loaded[0][0]
    backbone = next(iter(first["backbones"]))

    def episodes(data: dict, agent: str) -> np.ndarray:
        return np.asarray(data["backbones"][backbone]["episodes"][agent]["scores"][metric], dtype=np.float64)

    base = episodes(first, baseline)
    for data, agent in loaded[1:]:
        if data["seeds"] != first["seeds"] or not np.array_equal(episodes(data, baseline), base):
            raise ValueError(f"{agent}'s evaluation is not on the same episodes as {loaded[0][1]}'s.")
    diff = np.mean([episodes(data, agent) for data, agent in loaded], axis=0) - base
    num_queries, num_seeds = diff.shape
    if num_seeds < 2:
        raise ValueError("seed_power needs 2 noise seeds per query or more to measure the seeds' part.")
    noise = float(diff.var(axis=1, ddof=1).mean() / num_seeds)
    total = float(diff.mean(axis=1).var(ddof=1))
    spread = max(total - noise, 0.0)
    out = {
        "agents": [agent for _, agent in loaded],
        "baseline": baseline,
        "metric": metric,
        "queries": num_queries,
        "seeds_per_query": num_seeds,
        "mean_difference": round(float(diff.mean()), 4),
        "variance_of_query_means": round(total, 6),
        "noise_seed_part": round(noise, 6),
        "query_part": round(spread, 6),
        "noise_seed_share": round(noise / (noise + spread), 3) if noise + spread > 0 else None,
        "projected_half_width": {
            str(k): round(1.96 * float(np.sqrt((spread + noise * num_seeds / k) / num_queries)), 4) for k in seeds
        },
    }
    folder = results / f"compose_{name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "power.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{name}: {', '.join(out['agents'])} - {baseline} = {out['mean_difference']:+.3f} ({metric})")
    print(f"  noise seeds' share of the variance of a query's mean difference: {out['noise_seed_share']}")
    print("  | seeds per query | projected 95% half-width |\n  |---|---|")
    for k, half in out["projected_half_width"].items():
        print(f"  | {k} | {half:.3f} |")
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
        choices=[
            "train",
            "curve",
            "checkpoints",
            "pool",
            "power",
            "reward",
            "longer",
            "ladder",
            "generalisation",
            "composition",
            "overoptimisation",
        ],
    )
    parser.add_argument("--runs", default="runs/compose-learner", help="folder of the GRPO runs")
    parser.add_argument("--only", default="", help="train: comma-separated runs (default all)")
    parser.add_argument("--seeds", type=int, default=4, help="noise seeds per held-out query")
    parser.add_argument(
        "--against",
        default="",
        help="curve: also the reward minus this agent's (e.g. one-shot) on each iteration's own draws",
    )
    parser.add_argument(
        "--draws", type=int, default=240, help="checkpoints: training (query, noise) draws every iteration plays"
    )
    parser.add_argument(
        "--warm-start-seeds",
        type=int,
        default=1,
        help="checkpoints: sampling seeds the warm start is played with (its windows' contrasts use their mean)",
    )
    parser.add_argument(
        "--greedy", action="store_true", help="checkpoints: play each policy greedily instead of with its sampler"
    )
    parser.add_argument(
        "--evals",
        default="",
        help="pool, power: comma-separated EVAL_JSON:AGENT, one GRPO seed each (pool: its _a_priori, _blank too)",
    )
    parser.add_argument(
        "--reference",
        default="",
        help="pool: EVAL_JSON:AGENT[,...] to subtract from each pooled mode (e.g. the warm start); several are pooled",
    )
    parser.add_argument("--reference-name", default="reference", help="pool: the name of a pooled --reference")
    parser.add_argument("--name", default="grpo_seeds", help="pool, power: results go to results/compose_NAME/")
    parser.add_argument("--max-queries", type=int, default=0, help="first N held-out queries (0 = all; smoke runs)")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    shipped = "promptloop_agents/assets/toy-compose-policy"
    if args.experiment == "train":
        train(runs, args.only.split(",") if args.only else list(RUNS))
    elif args.experiment == "curve":
        names = args.only.split(",") if args.only else [n for n in RUNS if (runs / n / "metrics.jsonl").exists()]
        curve(runs, names, against=args.against)
    elif args.experiment == "pool":
        items = [item for item in args.evals.split(",") if item]
        refs = [item for item in args.reference.split(",") if item]
        pairs = [item.rsplit(":", 1) for item in [*items, *refs]]
        if len(items) < 2 or any(len(pair) != 2 for pair in pairs):
            parser.error(
                "pool needs --evals EVAL_JSON:AGENT,EVAL_JSON:AGENT[,...] (two seeds or more) and an optional"
                " --reference EVAL_JSON:AGENT[,...]"
            )
        evals = [(Path(path), agent) for path, agent in pairs]
        pool_seeds(evals[: len(items)], args.name, reference=evals[len(items) :], reference_name=args.reference_name)
    elif args.experiment == "power":
        pairs = [item.rsplit(":", 1) for item in args.evals.split(",") if item]
        if not pairs or any(len(pair) != 2 for pair in pairs):
            parser.error("power needs --evals EVAL_JSON:AGENT[,...] (one or more policies on the same episodes)")
        seed_power([(Path(path), agent) for path, agent in pairs], args.name)
    elif args.experiment == "checkpoints":
        checkpoint_curve(
            runs, args.only.split(","), draws=args.draws, warm_start_seeds=args.warm_start_seeds, greedy=args.greedy
        )
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
        from research.toy_compose import TOY_GUIDANCE, backbone_source

        # an experiment model is a folder: it takes the toy worlds' guidance only when told
        backbone = backbone_source("toy-compose-b" if args.experiment == "generalisation" else "toy-compose-tuned")
        agents = "identity,one_shot=one-shot,promptloop={runs}/closed/policy"
        agents += ",promptloop_a_priori={runs}/closed/policy:a-priori"
        evaluate(
            args.experiment, agents, runs, args.seeds, backbone=backbone, max_queries=args.max_queries,
            guidance_scale=str(TOY_GUIDANCE),
        )  # fmt: skip
    else:
        overoptimisation(runs)


if __name__ == "__main__":
    main()

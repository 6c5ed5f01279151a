"""Student distillation of the ``toy-compose`` teacher: a policy that should perceive, warm-started from rules.

PromptLoop's claim is that a policy which *looks at* the model's current x0 estimate writes better prompts than
any prompt written up front. The exact-reader teacher
(:class:`~promptloop_agents.policies.compose_teacher.ComposeTeacher`) reads every preview with the world's
analyser; this module fits to it a learned policy that sees only pixels (the study: ``research/toy_compose/NOTES.md``):

1. **Choices on training queries** (:mod:`research.toy_compose.selection`): the per-category one-shot rewrite and
   the teacher's per-category rule set.
2. **Distillation** (:func:`distill`): the toy Qwen2.5-VL policy is fitted to the teacher's prompts on the env's
   own previews (``collect_examples``), a share of them without the image so that the same weights also work in
   a-priori mode (prompts planned from the query alone), then saved as a policy folder for GRPO
   (``promptloop train --policy toy --warm_start_from FOLDER``) and for ``promptloop eval``. The shipped
   ``promptloop_agents/assets/toy-compose-policy`` was made so.
3. **Optionally, a perception stage first** (``--perception-seeds N``): :func:`perception_examples` labels many
   previews with the analyser (rollouts only, no teacher), :func:`pretrain_perception` fits a fresh policy to
   describe them, and the distillation starts from its vision tower (``fit_student(init_vision=...)``).

Run from the repository root (not installed with the package)::

    python research/toy_compose/students.py --out runs/compose-distill
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import research.* (and this checkout's packages) from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from promptloop_agents.policies.compose_reference import REWRITES, read_preview
from promptloop_agents.policies.compose_teacher import SELECTION_FILE, ComposeTeacher, apply_rewrite
from promptloop_env.toy.compose import CATEGORIES, caption
from research.toy_compose.selection import (
    SelectionEpisodes,
    compose_env_kwargs,
    select_category_rewrites,
    select_teacher_rules,
)

COMPOSE_PREVIEW_CONTRAST = 160.0


@dataclass(frozen=True)
class StudentFit:
    """How a toy student is fitted (:func:`fit_student`, :func:`pretrain_perception`): a fresh toy Qwen2.5-VL policy
    of ``size`` seeing ``image_size``-pixel previews, then supervised fine-tuning."""

    size: str = field(default="compose", metadata={"help": "toy policy size (build_toy_policy)"})
    image_size: int = field(default=112, metadata={"help": "pixels of the previews the student sees"})
    steps: int = field(default=1500, metadata={"help": "supervised fine-tuning steps"})
    batch_size: int = field(default=32, metadata={"help": "examples per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "AdamW learning rate", "aliases": ["--lr"]})
    seed: int = field(default=0, metadata={"help": "the student's initial weights, held-out split, batches, rollouts"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def fresh_student(self) -> Any:
        """A freshly initialised toy policy (an ``MLLMAgent``) of this ``size``, ``image_size`` and ``seed``."""
        from promptloop_agents.policies.toy_policy import build_toy_policy
        from promptloop_env.toy.tokenizer import COMPOSE_WORDS, world_words

        return build_toy_policy(
            self.size,
            words=world_words() + list(COMPOSE_WORDS),
            seed=self.seed,
            image_size=self.image_size,
            max_new_tokens=32,
            preview_contrast=COMPOSE_PREVIEW_CONTRAST,
        )

    def finetune(self, agent: Any, examples: Sequence[Any]) -> list[float]:
        """Supervised fine-tuning of ``agent`` on ``examples`` at these settings; the per-step losses."""
        from promptloop_agents.learners.sft import supervised_finetune

        return supervised_finetune(
            agent,
            examples,
            steps=self.steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            progress=self.progress,
        )


PERCEPTION_FIT = StudentFit(steps=4000)
"""The perception stage's fit (:func:`pretrain_perception`): longer than the decisions' (``StudentFit()``)."""


@dataclass
class StudentRollouts:
    """The command line a student's script shares (this one and ``forks.py``): where its examples come from."""

    backbone: str = field(default="toy-compose", metadata={"help": "the backbone the rollouts run on"})
    train_prompts: str = field(default="toy-compose-train", metadata={"help": "the training queries (a prompt set)"})
    seeds_per_query: int = field(default=2, metadata={"help": "episodes per training query the examples come from"})
    text_only_fraction: float = field(
        default=0.25, metadata={"help": "share of the examples without the preview (for the a-priori mode)"}
    )


def distill(
    out: str | Path,
    choice: dict[str, str],
    queries: Sequence[str],
    rules: dict[str, str] | None = None,
    seeds_per_query: int = 2,
    backbone: str = "toy-compose",
    fit: StudentFit = StudentFit(),
    text_only_fraction: float = 0.25,
    describe: bool = True,
    num_envs: int = 64,
    init_vision: str | Path | None = None,
    extra_describe: Sequence[Any] = (),
    extra_examples: Sequence[Any] = (),
) -> dict[str, Any]:
    """Fit the toy policy to the teacher on env rollouts of ``queries`` and save it in ``out``; returns a report.

    The student sees the env's previews (contrast-stretched, as a person would look at a faint image) and the
    state text; it never sees the analyser's reading. ``text_only_fraction`` of the examples hide the preview,
    so the same weights also serve the a-priori mode. With ``describe``, every shown preview from
    ``min_timestep`` on also yields an auxiliary example (:func:`describe_examples`): the state text asks for a
    description and the target names the objects the analyser reads, left to right. This is perception
    supervision at training time only; prompting the policy never involves the analyser. ``fit.seed`` also
    seeds the rollouts.
    """
    from promptloop_agents.learners.sft import collect_examples
    from promptloop_agents.rollout import make_vector_env

    tick = time.perf_counter()
    episodes_q = [q for q in queries for _ in range(seeds_per_query)]
    envs = make_vector_env(min(num_envs, len(episodes_q)), **compose_env_kwargs(backbone))
    examples = collect_examples(
        envs, ComposeTeacher(choice, rules), episodes_q, seed=fit.seed, text_only_fraction=text_only_fraction
    )
    envs.close()
    examples += extra_examples  # decisions made without rollouts (e.g. first_action_examples)
    report = {
        "extra_examples": len(extra_examples),
        "teacher_choice": choice,
        "teacher_rules": ComposeTeacher(choice, rules).rules,
        "rollout_seconds": time.perf_counter() - tick,
    }
    return fit_student(
        out, examples, choice, report, fit, describe, init_vision=init_vision, extra_describe=extra_describe
    )


def fit_student(
    out: str | Path,
    examples: list[Any],
    choice: dict[str, str],
    report: dict[str, Any],
    fit: StudentFit = StudentFit(),
    describe: bool = True,
    init_vision: str | Path | None = None,
    extra_describe: Sequence[Any] = (),
) -> dict[str, Any]:
    """Fit a toy policy to ``examples`` (plus the describe examples), hold out up to 256 for the greedy
    match rate, and save it with ``report`` (completed with the fit's figures) and the rewrite ``choice``.

    ``init_vision``: take the vision tower from this policy folder (the perception stage's,
    :func:`pretrain_perception`, of the same ``fit.size`` and ``fit.image_size``); the language model starts fresh.
    (Starting from all of the perception stage's weights does not work: a language model that only ever had to
    describe ignores the query, and 1500 steps did not teach it back: 6% greedy match.) ``extra_describe``: more
    describe examples mixed in (e.g. a share of the perception stage's), so reading is kept while the decisions are
    fitted."""
    from promptloop_agents.learners.sft import greedy_match_rate
    from promptloop_agents.policies.mllm import MLLMAgent

    tick = time.perf_counter()
    if describe:
        examples = [*examples, *describe_examples(examples), *extra_describe]
    held, train = _hold_out(examples, fit.seed)  # held-out decisions for the match rate
    agent = fit.fresh_student()
    if init_vision is not None:
        seen = MLLMAgent.from_pretrained(init_vision)
        if seen.image_size != fit.image_size:
            raise ValueError(
                f"init_vision={init_vision} was trained on {seen.image_size}-pixel previews but image_size="
                f"{fit.image_size}; fit with image_size={seen.image_size}."
            )
        agent.model.model.visual.load_state_dict(seen.model.model.visual.state_dict())
        report = {**report, "vision_from": str(init_vision)}
    losses = fit.finetune(agent, train)
    held = [ex for ex in held if ex.observation["query"] != DESCRIBE_QUERY]
    changed = [ex for ex in held if ex.target != str(ex.observation["prompt"])]
    report = {
        **report,
        "examples": len(train),
        "held_out_examples": len(held),
        "loss_first": losses[0],
        "loss_last": float(np.mean(losses[-20:])),
        "greedy_match_held_out": greedy_match_rate(agent, held, limit=256),
        "greedy_match_held_out_changed_prompt": greedy_match_rate(agent, changed, limit=256),
        "changed_share": len(changed) / max(len(held), 1),
        "sft_seconds": time.perf_counter() - tick,
        "steps": fit.steps,
        "image_size": fit.image_size,
        "size": fit.size,
    }
    out = Path(out)
    agent.save_pretrained(out)
    (out / "warm_start.json").write_text(json.dumps(report, indent=2))
    (out / SELECTION_FILE).write_text(json.dumps(choice, indent=2))
    return report


def first_action_examples(choice: dict[str, str], count: int, seed: int = 0) -> list[Any]:
    """Text-only examples of the first decision on ``count`` combinations of the world's training side.

    The first prompt is written before any preview, from the query alone: the category's one-shot rewrite
    (``choice``). Rollouts give one such example per episode, on the 600 training queries only (100 per
    category), too few for the toy language model to learn to swap two coloured objects or invert a relation
    for combinations it has not seen. Here the query is any combination the split sends to training
    (:func:`promptloop_env.toy.compose_prompts.query_split`: never a test combination), with or without a
    background, drawn evenly over the categories; no denoising is needed.
    """
    from promptloop_agents.learners.sft import SFTExample
    from promptloop_env.toy.compose_prompts import combinations, query_split

    rng = np.random.default_rng(seed)
    pools = [[q for q in combinations(c) if query_split(q) == "train"] for c in CATEGORIES]
    out = []
    for i in range(count):
        pool = pools[i % len(pools)]
        combination = pool[rng.integers(len(pool))]
        query = caption(combination)
        observation = {"query": query, "prompt": query, "segment": 0, "timestep": np.zeros(1, dtype=np.float32)}
        out.append(SFTExample(observation, apply_rewrite(choice[combination.category], query), with_image=False))
    return out


DESCRIBE_QUERY = "describe the image"


def seen_text(preview: np.ndarray | Any) -> str:
    """The objects the analyser reads on a (contrast-stretched) preview, left to right: ``red circle, square``.

    ``preview``: the uint8 image, or the analyser's reading of it (:func:`read_preview`) when already made."""
    seen = read_preview(preview) if isinstance(preview, np.ndarray) else preview
    objects = sorted(seen.objects, key=lambda o: (o.cx, o.cy))
    return ", ".join(f"{o.colour} {o.shape}" for o in objects) or "nothing"


def describe_examples(examples: Sequence[Any], min_timestep: float = 0.35) -> list[Any]:
    """Auxiliary perception examples: for each shown preview from ``min_timestep`` on, the same observation with
    the query :data:`DESCRIBE_QUERY` and the analyser's reading as the target (:func:`seen_text`)."""
    from promptloop_agents.learners.sft import SFTExample

    out = []
    for ex in examples:
        timestep = float(np.asarray(ex.observation["timestep"]).reshape(-1)[0])
        if ex.with_image and timestep >= min_timestep:
            observation = {**ex.observation, "query": DESCRIBE_QUERY, "prompt": DESCRIBE_QUERY}
            out.append(SFTExample(observation, seen_text(ex.observation["image"]), with_image=True))
    return out


PERCEPTION_POINTS = (0, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
"""Refinement points of the perception rollouts: every step from 7 of 20 (progress 0.35) to 16."""
PERCEPTION_SEED0 = 2_000_000  # noise seeds of the perception rollouts (the decision rollouts draw theirs at random)


def perception_examples(
    queries: Sequence[str],
    choice: dict[str, str],
    seeds_per_query: int = 4,
    points: Sequence[int] = PERCEPTION_POINTS,
    backbone: str = "toy-compose",
    batch: int = 60,
    seed: int = 0,
    progress: bool = True,
) -> list[Any]:
    """Describe examples (:func:`describe_examples`' format) on many previews, without a teacher.

    Each episode keeps one prompt to the end: half the category's one-shot rewrite (``choice``), half a rewrite
    of the query drawn at random (``identity`` or any of :data:`REWRITES`), so the scenes vary as the closed
    loop's do. Its x0 previews at every point of ``points`` after the first are labelled with the analyser's
    reading. This costs rollouts and the analyser only: many more previews than the teacher's rollouts give.
    """
    from tqdm.auto import tqdm

    from promptloop_agents.learners.sft import SFTExample
    from promptloop_env.core import PromptLoopCore
    from promptloop_env.toy.compose_spec import parse

    core = PromptLoopCore(
        **compose_env_kwargs(backbone, reward="toy-compose", schedule=list(points)) | {"num_refinements": len(points)}
    )
    rng = np.random.default_rng(seed)
    episodes_q = [q for q in queries for _ in range(seeds_per_query)]
    names = ["identity", *REWRITES]
    out: list[Any] = []
    for at in tqdm(range(0, len(episodes_q), batch), desc="perception rollouts", disable=not progress):
        part = episodes_q[at : at + batch]
        prompts = [
            apply_rewrite(choice[parse(q).category] if rng.random() < 0.5 else names[rng.integers(len(names))], q)
            for q in part
        ]
        noise = [PERCEPTION_SEED0 + seed * 10_000_000 + at + i for i in range(len(part))]
        episodes = core.start([np.random.default_rng(n) for n in noise], part, noise)
        core.advance(episodes, prompts)
        while not episodes[0].terminated:
            for ep in episodes:
                observation = {**core.observation(ep), "query": DESCRIBE_QUERY, "prompt": DESCRIBE_QUERY}
                out.append(SFTExample(observation, seen_text(observation["image"]), with_image=True))
            core.advance(episodes, prompts)
    return out


def pretrain_perception(
    out: str | Path,
    examples: Sequence[Any],
    fit: StudentFit = PERCEPTION_FIT,
) -> dict[str, Any]:
    """The perception stage: fit a fresh toy policy to describe ``examples`` (:func:`perception_examples`) and
    save it in ``out``, whose vision tower starts :func:`fit_student` (``init_vision=out``). Returns the fit's
    figures, with the greedy exact-description rate on up to 256 held-out previews."""
    from promptloop_agents.learners.sft import greedy_match_rate

    tick = time.perf_counter()
    held, train = _hold_out(examples, fit.seed)
    agent = fit.fresh_student()
    losses = fit.finetune(agent, train)
    report = {
        "perception_examples": len(train),
        "perception_loss_first": losses[0],
        "perception_loss_last": float(np.mean(losses[-20:])),
        "perception_exact_held_out": greedy_match_rate(agent, held, limit=256),
        "perception_steps": fit.steps,
        "perception_seconds": time.perf_counter() - tick,
        "image_size": fit.image_size,
        "size": fit.size,
    }
    out = Path(out)
    agent.save_pretrained(out)
    (out / "perception.json").write_text(json.dumps(report, indent=2))
    return report


def _hold_out(examples: Sequence[Any], seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded split of ``examples``: up to 256 (a fifth at most) held out, the rest to train on."""
    order = np.random.default_rng(seed).permutation(len(examples))
    num_held = min(256, len(examples) // 5)
    return [examples[i] for i in order[:num_held]], [examples[i] for i in order[num_held:]]


@dataclass
class DistillArgs(StudentRollouts):
    """The command line of :func:`main` (with :class:`StudentFit`'s)."""

    out: str = field(
        default="runs/compose-distill", metadata={"help": "output folder (the policy goes to OUT/policy)"}
    )
    selection_queries: int = field(default=240, metadata={"help": "training queries used for selection"})
    selection_seeds: int = field(default=2, metadata={"help": "noise seeds per selection query"})
    selection_from: str = field(default="", metadata={"help": "reuse the choice of a saved selection.json"})
    rule_queries: int = field(default=180, metadata={"help": "other training queries for the rule choice"})
    rules_from: str = field(default="", metadata={"help": "reuse the rules of a saved teacher_rules.json"})
    describe: bool = field(
        default=True, metadata={"help": "also fit the analyser's reading of each shown preview (describe examples)"}
    )
    perception_seeds: int = field(
        default=0, metadata={"help": "episodes per training query of a perception stage (0: none)"}
    )
    perception_steps: int = field(default=PERCEPTION_FIT.steps, metadata={"help": "the perception stage's steps"})
    perception_from: str = field(
        default="", metadata={"help": "take the vision tower of this perception-stage policy folder"}
    )
    perception_mix: int = field(default=8000, metadata={"help": "perception previews mixed into the decision fit"})
    first_action_queries: int = field(
        default=0,
        metadata={"help": "text-only first decisions on this many training-side combinations (first_action_examples)"},
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Select the per-category rewrites on training queries, then distil the oracle; writes ``--out``."""
    from promptloop_env.cli import parse_configs
    from promptloop_env.prompts import resolve_prompts

    args, fit = parse_configs([DistillArgs, StudentFit], argv, description=__doc__.split("\n\n")[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    queries = list(resolve_prompts(args.train_prompts, None))
    if args.selection_from:
        selection = json.loads(Path(args.selection_from).read_text())
    else:
        rng = np.random.default_rng(fit.seed)
        picked = [queries[i] for i in sorted(rng.choice(len(queries), args.selection_queries, replace=False))]
        selection = select_category_rewrites(SelectionEpisodes(picked, args.selection_seeds, args.backbone))
        (out / "selection.json").write_text(json.dumps(selection, indent=2))
    print("per-category rewrite:", selection["choice"])
    if args.rules_from:
        rules = json.loads(Path(args.rules_from).read_text())
    else:
        picked = set(np.random.default_rng(fit.seed).choice(len(queries), args.selection_queries, replace=False))
        rest = [i for i in range(len(queries)) if i not in picked]
        other = np.random.default_rng(fit.seed + 1).choice(rest, args.rule_queries, replace=False)
        # 2 seeds a query, 60 envs: the settings the shipped teacher_rules.json was chosen with
        episodes = SelectionEpisodes([queries[i] for i in sorted(other)], 2, args.backbone, num_envs=60)
        rules = select_teacher_rules(selection["choice"], episodes)
        (out / "teacher_rules.json").write_text(json.dumps(rules, indent=2))
    print("per-category teacher rules:", rules["rules"])
    init, extra = (args.perception_from or None), []
    if args.perception_seeds:
        seen = perception_examples(queries, selection["choice"], args.perception_seeds, seed=fit.seed)
        if init is None:  # else: the previews are only mixed into the decision fit
            init = out / "perception"
            # the perception stage: --size, --image-size and its own steps; the fit's other settings at their defaults
            perception_fit = StudentFit(fit.size, fit.image_size, steps=args.perception_steps)
            print(json.dumps(pretrain_perception(init, seen, perception_fit), indent=2))
        rng = np.random.default_rng(fit.seed)
        extra = [seen[i] for i in rng.choice(len(seen), min(args.perception_mix, len(seen)), replace=False)]
    report = distill(
        out / "policy",
        selection["choice"],
        queries,
        rules["rules"],
        seeds_per_query=args.seeds_per_query,
        backbone=args.backbone,
        fit=fit,
        text_only_fraction=args.text_only_fraction,
        describe=args.describe,
        init_vision=init,
        extra_describe=extra,
        extra_examples=first_action_examples(selection["choice"], args.first_action_queries, fit.seed),
    )
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

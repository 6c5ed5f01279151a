"""``promptloop``: train, evaluate and demo PromptLoop agents from the command line.

    promptloop train --config recipes/toy.yaml --output-dir runs/toy
    promptloop train --config runs/toy/config.yaml --max-steps 200     # resume or re-run a saved config
    promptloop eval --policy runs/toy/policy --output-dir runs/toy/eval --device cuda
    promptloop eval --backbone toy-compose --reward toy-compose --eval-prompts toy-compose-test \
        --metrics toy-compose,toy-compose-soft --agents identity,best-static,oracle,runs/c/policy,runs/c/policy:blank
    promptloop demo --out runs/demo
    promptloop generate "a red circle left of a blue square" --policy toy-compose --out out.png

``--config`` reads a recipe (``recipes/*.yaml``: sections ``env``, ``policy``, ``grpo``); flags override it.
Every option is also accepted with underscores (``--max_steps``).

Multi-process training (one vector env per process) goes through ``accelerate launch``; the config files
under ``recipes/accelerate/`` select DDP, FSDP or DeepSpeed ZeRO-2/3. On a CPU-only machine
``--multi_gpu --num_processes 2`` gives two gloo processes (``--cpu`` silently starts one):

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        -m promptloop_agents.cli.main train --config recipes/toy.yaml --output-dir runs/ddp

Nothing machine-specific is forced here: offline mode (``HF_HUB_OFFLINE``) and thread counts
(``OMP_NUM_THREADS``) are the user's, the Makefile's or the tests' to set.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from promptloop_agents.cli.demo import DemoConfig, run_demo
from promptloop_agents.cli.generate import GenerateConfig, add_generate_parser, generate
from promptloop_agents.configs import config_from_args, config_sections, read_config_file

COMMAND_SECTIONS = {"train": ("env", "policy", "grpo"), "eval": ("env", "policy", "eval")}
"""The config sections each command reads (and its ``--config`` file may hold)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``promptloop`` parser: one sub-command per task, one option per config field (``HfArgumentParser``)."""
    from transformers import HfArgumentParser

    from promptloop_env.cli import share_fields

    parser = argparse.ArgumentParser(prog="promptloop", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{train,eval,demo,generate}", parser_class=HfArgumentParser
    )
    train = commands.add_parser(
        "train",
        conflict_handler="resolve",  # fields several sections share (refine_schedule) are one option
        dataclass_types=[config_sections()[s] for s in COMMAND_SECTIONS["train"]],
        help="Warm-start (toy policy) and train a policy with GRPO; writes a run folder.",
        description="Train a PromptLoop policy with GRPO. The run folder gets config.yaml (the resolved config), "
        "metrics.jsonl, checkpoints/ (resumed automatically), warm_start/ (toy policy), policy/ and reward_curve.png.",
    )
    evaluate = commands.add_parser(
        "eval",
        conflict_handler="resolve",  # fields several sections share (device, refine_schedule) are one option
        dataclass_types=[config_sections()[s] for s in COMMAND_SECTIONS["eval"]],
        help="Evaluate agents on held-out queries (bootstrap 95%% CIs, paired differences); writes eval.json/.md.",
        description="Run built-in agents and policy folders (closed loop, a priori, or on blank previews) on the "
        "same held-out (query, seed) episodes of one or more backbones (--backbone a,b) and write eval.json "
        "(mean and bootstrap 95% CI over queries per metric, per category on toy-compose, paired differences, "
        "per-episode scores), eval.md (tables) and samples_<backbone>.png (final images, a row per agent).",
    )
    for sub, command in ((train, "train"), (evaluate, "eval")):
        share_fields(sub, [config_sections()[s] for s in COMMAND_SECTIONS[command]])
        sub.add_argument("--config", default=None, help="A recipe or saved config.yaml; flags override it.")
    train.add_argument(
        "--learner", default="grpo", help="The learner, by name (promptloop_agents.cli.train.LEARNERS)."
    )
    commands.add_parser(
        "demo",
        dataclass_types=[DemoConfig],
        help="Train on the toy-compose world, evaluate against baselines, draw the pictures (CPU, ~6 min).",
        description="The toy-compose demo: the shipped distilled policy, GRPO, held-out evaluation of identity, the "
        "best one-shot rewrite and the trained policy a priori and closed loop; writes metrics.json, "
        "reward_curve.png, filmstrip.png, before_after.png and policy/ under --out.",
    )
    add_generate_parser(commands)
    parser.subcommands = commands.choices  # type: ignore[attr-defined]  (parse_args sets a recipe's defaults there)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; with ``--config FILE`` the file's values become the defaults that flags override."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        values = read_config_file(args.config, COMMAND_SECTIONS[args.command])
        parser.subcommands[args.command].set_defaults(**values)
        args = parser.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``promptloop`` console script."""
    args = parse_args(argv)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("promptloop_agents").setLevel(logging.INFO)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from promptloop_agents.cli.evaluate import evaluate_from_configs
    from promptloop_agents.cli.train import train

    if args.command == "train":
        env, policy, grpo = (config_from_args(config_sections()[s], args) for s in COMMAND_SECTIONS["train"])
        train(env, policy, grpo, learner=args.learner)
    elif args.command == "eval":
        env, policy, evaluation = (config_from_args(config_sections()[s], args) for s in COMMAND_SECTIONS["eval"])
        evaluate_from_configs(env, policy, evaluation)
        print((Path(evaluation.output_dir) / "eval.md").read_text())
    elif args.command == "generate":
        generate(config_from_args(GenerateConfig, args), args.prompt)
    else:
        run_demo(config_from_args(DemoConfig, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``promptloop``: train, evaluate and demo PromptLoop agents from the command line.

    promptloop train --output-dir runs/toy-compose                     # the toy-compose world (CPU)
    promptloop train --config runs/toy-compose/config.yaml --max-steps 80  # resume or re-run a saved config
    promptloop eval --max-queries 12                                   # identity, one-shot, the shipped policy
    promptloop eval --config runs/toy-compose/config.yaml --policy runs/toy-compose/policy \\
        --agents identity,one-shot,policy,policy:a-priori,oracle --output-dir runs/toy-compose/eval
    promptloop demo --out runs/demo
    promptloop generate "a red circle left of a blue square" --policy toy-compose --out out.png

Bare commands run the toy-compose world (``train``: the values of ``recipes/toy-compose.yaml``); naming another
toy backbone brings that world's reward, prompt sets, metrics and policy (:data:`WORLD_DEFAULTS`) unless they are
given; other backbones get the config classes' defaults. ``--config`` reads a recipe (``recipes/*.yaml``: sections
``env``, ``policy``, ``grpo``); flags override it. Every option is also accepted with underscores (``--max_steps``).
Errors are one line on stderr (exit code 2); ``--debug`` shows the traceback.

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
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from promptloop_agents.cli.demo import DemoConfig, run_demo
from promptloop_agents.cli.generate import GenerateConfig, add_generate_parser, generate
from promptloop_agents.configs import config_from_args, config_sections, read_config_file

COMMANDS = ("train", "eval", "demo", "generate")
COMMAND_SECTIONS = {"train": ("env", "policy", "grpo"), "eval": ("env", "policy", "eval")}
"""The config sections each command reads (and its ``--config`` file may hold)."""

_TOY_COMPOSE_EVAL = {"reward": "toy-compose-soft", "num_inference_steps": 20, "num_refinements": 5}
_TOY_COMPOSE_EVAL |= {"refine_schedule": "0,9,11,13,15", "eval_prompts": "toy-compose-test"}
_TOY_SHAPES = {"reward": "toy-fidelity", "eval_prompts": "toy-user-test"}
WORLD_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "toy-compose": {
        "train": {  # recipes/toy-compose.yaml (a test keeps them equal), and the periodic evaluation's sets
            **_TOY_COMPOSE_EVAL,
            **{"toy_size": "compose", "warm_start_from": "toy-compose", "temperature": 1.3, "max_new_tokens": 32},
            **{"train_prompts": "toy-compose-train", "max_steps": 40, "queries_per_iteration": 6, "group_size": 8},
            **{"same_noise": True, "learning_rate": 0.002, "micro_batch_size": 32, "beta": 0.04},
            **{"eval_metrics": "toy-compose,toy-compose-soft"},
        },
        "eval": {**_TOY_COMPOSE_EVAL, "metrics": "toy-compose,toy-compose-soft", "agents": "identity,one-shot,policy"},
    },
    "toy-shapes": {
        "train": {**_TOY_SHAPES, "train_prompts": "toy-user-train", "eval_metrics": "toy-fidelity,toy-aesthetic"}
        | {"toy_size": "small", "warm_start_from": "shipped", "max_new_tokens": 24},
        "eval": {**_TOY_SHAPES, "metrics": "toy-fidelity,toy-aesthetic", "agents": "identity,static,policy"},
    },
}
"""What a toy backbone brings to ``promptloop train`` / ``eval``: its reward, prompt sets, metrics and policy, and
for toy-compose (the default backbone) the settings of its recipe. They fill in whatever neither a flag nor
``--config`` sets; any other backbone gets the config classes' defaults."""
DEFAULT_BACKBONE = "toy-compose"


class _Parser:
    """Mixin of the sub-command parsers: an argument error is one line (with where to look) and exit code 2."""

    def error(self, message: str):  # argparse's contract: print and exit
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _subparser_class():
    from transformers import HfArgumentParser

    return type("PromptLoopParser", (_Parser, HfArgumentParser), {})


def build_parser() -> argparse.ArgumentParser:
    """The ``promptloop`` parser: one sub-command per task, one option per config field (``HfArgumentParser``)."""
    from promptloop_agents.evaluation.agents import agents_help
    from promptloop_env.cli import share_fields

    parser = type("PromptLoopMain", (_Parser, argparse.ArgumentParser), {})(
        prog="promptloop", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--debug", action="store_true", help="On an error, show the full traceback.")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{train,eval,demo,generate}", parser_class=_subparser_class()
    )
    train = commands.add_parser(
        "train",
        conflict_handler="resolve",  # fields several sections share (refine_schedule) are one option
        dataclass_types=[config_sections()[s] for s in COMMAND_SECTIONS["train"]],
        help="Train a policy with GRPO (default: the toy-compose world from its shipped policy); writes a run folder.",
        description="Train a PromptLoop policy with GRPO. The run folder gets config.yaml (the resolved config), "
        "metrics.jsonl, checkpoints/ (resumed automatically), warm_start/ (toy policy), policy/ and reward_curve.png; "
        "the last line printed is the command that evaluates the policy.",
    )
    evaluate = commands.add_parser(
        "eval",
        conflict_handler="resolve",  # fields several sections share (device, refine_schedule) are one option
        dataclass_types=[config_sections()[s] for s in COMMAND_SECTIONS["eval"]],
        help="Evaluate agents on held-out queries (bootstrap 95%% CIs, paired differences); writes eval.json/.md.",
        description="Run built-in agents and policy folders (closed loop, a priori, or on blank previews) on the "
        "same held-out (query, seed) episodes of one or more backbones (--backbone a,b) and write eval.json "
        "(mean and bootstrap 95% CI over queries per metric, per category on toy-compose, paired differences, "
        "per-episode scores, how each agent chose its prompts), eval.md (tables) and samples_<backbone>.png (final "
        "images, a row per agent, a column per query). Policies answer greedily (their most likely prompt) unless "
        "--do-sample is given.",
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
        help="Train on the toy-compose world, evaluate against baselines, draw the pictures (CPU, minutes).",
        description="The toy-compose demo: the shipped distilled policy, a fixed number of GRPO iterations, held-out "
        "evaluation of identity, the best one-shot rewrite and the trained policy (greedy) across all six "
        "categories; writes metrics.json, reward_curve.png, filmstrip.png, comparison.png and policy/ under --out.",
    )
    add_generate_parser(commands)
    for sub in commands.choices.values():  # accepted before or after the command's name
        sub.add_argument("--debug", action="store_true", help="On an error, show the full traceback.")
    for name in COMMAND_SECTIONS:  # --help shows the bare command's values: the toy-compose world's
        commands.choices[name].set_defaults(backbone=DEFAULT_BACKBONE, **WORLD_DEFAULTS[DEFAULT_BACKBONE][name])
    _fix_help(train, {})
    _fix_help(commands.choices["demo"], {})
    _fix_help(
        evaluate,
        {
            "reward": "Env reward (what each step returns); the table scores the final images with --metrics.",
            "agents": agents_help(),
            "policy": "What agent 'policy' runs: a policy folder or hub id; 'toy' = the backbone's shipped policy.",
            "baseline": "Agent the paired differences of the table are taken to (not among --agents: the first).",
            "temperature": "With --do-sample: the policies' sampling temperature; default: each policy's saved one.",
        },
    )
    parser.subcommands = commands.choices  # type: ignore[attr-defined]  (parse_args sets a recipe's defaults there)
    return parser


def _fix_help(parser: argparse.ArgumentParser, helps: dict[str, str]) -> None:
    """Per-command help texts, and the ``--no_X`` switches described as such (not as a copy of ``--X``'s help)."""
    for action in parser._actions:
        flag = action.option_strings[0] if action.option_strings else ""
        if flag.startswith("--no_"):
            action.help = f"Turn --{action.dest.replace('_', '-')} off (the same as --{action.dest} false)."
            action.default = argparse.SUPPRESS  # the positive flag sets the default; no "(default: ...)" here
        elif action.dest in helps and flag:
            action.help = helps[action.dest]


def _given(argv: list[str], name: str) -> bool:
    """Whether ``--name`` (with dashes or underscores) is among the command-line arguments."""
    spellings = {f"--{name}", f"--{name.replace('_', '-')}"}
    return any(arg.split("=")[0] in spellings for arg in argv)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``. With ``--config FILE`` the file's values become the defaults that flags override; the
    backbone's world (:data:`WORLD_DEFAULTS`) fills in what neither sets, and the config classes' defaults the
    rest."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in COMMAND_SECTIONS:
        return args
    values = read_config_file(args.config, COMMAND_SECTIONS[args.command]) if args.config else {}
    backbone = str(values.get("backbone", args.backbone)).split(",")[0].strip()
    world = WORLD_DEFAULTS.get(backbone, {}).get(args.command, {})
    classes = {f.name: f.default for s in COMMAND_SECTIONS[args.command] for f in fields(config_sections()[s])}
    others = {key: classes[key] for key in WORLD_DEFAULTS[DEFAULT_BACKBONE][args.command]}  # not this world's
    defaults = {key: value for key, value in {**others, **world}.items() if not _given(argv, key)}
    parser.subcommands[args.command].set_defaults(**{**defaults, **values})
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``promptloop`` console script: runs the command; an error is one line on stderr and exit
    code 2 (``--debug`` raises it with its traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    restore = quiet_libraries()
    args = None
    try:
        try:
            args = parse_args(argv)
        except SystemExit as done:  # --help, or an argument error already printed as one line
            return done.code if isinstance(done.code, int) else 0
        return run_command(args)
    except (ValueError, TypeError, OSError, KeyError, ImportError, gym_errors()) as err:
        if "--debug" in argv:
            raise
        name = args.command if args is not None else next((a for a in argv if a in COMMANDS), "")
        command = f"promptloop {name}".strip()
        message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        if type(err) is FileNotFoundError and err.filename:  # the OS's "[Errno 2] No such file ..."
            message = f"{err.filename}: not found."
        print(f"{command}: error: {message.splitlines()[0] if message else type(err).__name__}", file=sys.stderr)
        return 2
    finally:
        restore()


def gym_errors() -> type[Exception]:
    """Gymnasium's error base class (a missing extra, a bad env argument)."""
    from gymnasium.error import Error

    return Error


def quiet_libraries() -> Callable[[], None]:
    """Silence what a user did not ask for: transformers' notes that it falls back from torchvision to PIL image
    processors (harmless here), and the libraries' loading bars (the CLI has its own progress bars).

    Returns:
        A function that puts the libraries' settings back as they were (the CLI may run inside a user's process).
    """
    import logging as std_logging

    from transformers.utils import logging as hf_logging

    class DropTorchvisionFallback(std_logging.Filter):
        def filter(self, record: std_logging.LogRecord) -> bool:
            return "requires torchvision" not in record.getMessage()

    notes, drop = std_logging.getLogger("transformers.utils.import_utils"), DropTorchvisionFallback()
    notes.addFilter(drop)
    bars = [hf_logging]
    try:
        from diffusers.utils import logging as diffusers_logging

        bars.append(diffusers_logging)
    except ImportError:  # diffusers is the env's dependency; the CLI's help works without it
        pass
    enabled = [module.is_progress_bar_enabled() for module in bars]
    for module in bars:
        module.disable_progress_bar()

    def restore() -> None:
        notes.removeFilter(drop)
        for module, was_enabled in zip(bars, enabled):
            if was_enabled:
                module.enable_progress_bar()

    return restore


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command."""
    logging.basicConfig(format="%(message)s")
    logging.getLogger("promptloop_agents").setLevel(logging.INFO)
    from promptloop_agents.cli.evaluate import evaluate_from_configs
    from promptloop_agents.cli.train import train, trained_message

    if args.command == "train":
        env, policy, grpo = (config_from_args(config_sections()[s], args) for s in COMMAND_SECTIONS["train"])
        train(env, policy, grpo, learner=args.learner)
        print(trained_message(grpo.output_dir, env.backbone))
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

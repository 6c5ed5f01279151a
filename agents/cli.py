"""``promptloop``: train, evaluate and demo PromptLoop agents from the command line.

    promptloop train --output-dir runs/toy --num-iterations 100
    promptloop eval --policy runs/toy/policy --output-dir runs/toy/eval
    promptloop demo --out runs/demo

Multi-process training (one env batch per process; on a CPU-only machine this is the line that gives two
gloo processes, ``--cpu`` silently starts one):

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        -m promptloop_agents.cli train --output-dir runs/ddp
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from promptloop_agents.configs import (
    EnvConfig,
    EvalConfig,
    GRPOConfig,
    PolicyConfig,
    add_config_arguments,
    config_from_args,
)
from promptloop_agents.demo import DemoConfig, run_demo


def build_parser() -> argparse.ArgumentParser:
    """The ``promptloop`` parser: one sub-command per task, one option per config field."""
    parser = argparse.ArgumentParser(prog="promptloop", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,eval,demo}")
    train = commands.add_parser(
        "train",
        help="Warm-start (toy policy) and train a policy with GRPO; writes a run folder.",
        description="Train a PromptLoop policy with GRPO. The run folder gets config.json, metrics.jsonl, "
        "checkpoints/ (resumed automatically), warm_start/ (toy policy), policy/ and reward_curve.png.",
    )
    add_config_arguments(train, EnvConfig, "environment")
    add_config_arguments(train, PolicyConfig, "policy")
    add_config_arguments(train, GRPOConfig, "GRPO")
    evaluate = commands.add_parser(
        "eval",
        help="Evaluate agents on held-out queries (mean and 95%% CI per metric); writes metrics.json.",
        description="Run identity / static rewrite / random / a trained policy on the same held-out episodes "
        "(uniform refinement schedule) and write metrics.json with mean and 95% CI of every metric.",
    )
    add_config_arguments(evaluate, EnvConfig, "environment")
    add_config_arguments(evaluate, PolicyConfig, "policy")
    add_config_arguments(evaluate, EvalConfig, "evaluation")
    demo = commands.add_parser(
        "demo",
        help="Train on the toy world, evaluate against baselines, draw the pictures (CPU, ~15 min).",
        description="The toy-world demo: warm start, GRPO, held-out evaluation of identity, static rewrite, the "
        "warm-start policy and the trained policy; writes metrics.json, reward_curve.png, filmstrip.png, "
        "before_after.png and policy/ under --out.",
    )
    add_config_arguments(demo, DemoConfig, "demo")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``promptloop`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("promptloop_agents").setLevel(logging.INFO)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)  # 2 OpenMP threads stall badly on a shared 2-core machine; 1 is safe
    from promptloop_agents import runner

    if args.command == "train":
        runner.train(
            config_from_args(EnvConfig, args), config_from_args(PolicyConfig, args), config_from_args(GRPOConfig, args)
        )
    elif args.command == "eval":
        policy_config = config_from_args(PolicyConfig, args)
        eval_config = config_from_args(EvalConfig, args)
        policy = None
        if "policy" in eval_config.agents.split(","):
            if policy_config.policy == "toy":
                raise SystemExit(
                    "promptloop eval: pass --policy PATH (a policy folder or hub id) to evaluate a policy."
                )
            from promptloop_agents.mllm import MLLMAgent

            policy = MLLMAgent.from_pretrained(
                policy_config.policy, temperature=policy_config.temperature, mode=policy_config.mode
            )
        agents = runner.build_agents(eval_config.agents.split(","), policy, eval_config)
        results = runner.run_evaluation(config_from_args(EnvConfig, args), eval_config, agents)
        for name, result in results.items():
            summary = result.summary()
            print(name, {m: round(summary[m]["mean"], 4) for m in result.scores})
    else:
        run_demo(config_from_args(DemoConfig, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GRPO on PromptLoop with a multimodal LLM policy, through the library API (what ``promptloop train`` does).

Run: ``python examples/grpo_mllm_policy.py --max_steps 5`` (``pip install -e .[agents]``; the toy-shapes world
and its ``toy-fidelity`` reward, the run folder ``runs/grpo_mllm_policy``; every ``GRPOConfig`` field is a flag,
``--config run.yaml`` sets them from a file; ``--backbone tiny`` is the random-weight test model, scored by JPEG
size).

Steps: a toy image-text-to-text policy (Qwen2.5-VL family, built in code) is warm-started on env rollouts of
a varied rewrite teacher, then trained with GRPO (LoRA, KL to the adapter-free reference, random refinement
points); finally it and the identity agent play the same held-out seeds with evenly spaced refinement points.
For a real model, replace the toy policy by ``MLLMAgent.from_pretrained("Qwen/Qwen2.5-VL-3B-Instruct")``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from promptloop_agents import IdentityAgent
from promptloop_agents.configs import EnvConfig
from promptloop_agents.evaluation.harness import evaluate
from promptloop_agents.learners.grpo_config import GRPOConfig
from promptloop_agents.learners.grpo_trainer import GRPOTrainer
from promptloop_agents.learners.sft import collect_examples, supervised_finetune
from promptloop_agents.policies.toy_policy import build_toy_policy
from promptloop_agents.policies.toy_rewrites import toy_teacher
from promptloop_agents.rollout import make_vector_env
from promptloop_env.cli import parse_configs, with_defaults
from promptloop_env.rewards import make_reward
from promptloop_env.toy.prompts import TOY_USER_TEST_QUERIES, TOY_USER_TRAIN_QUERIES


@dataclass
class Args(with_defaults(EnvConfig, backbone="toy-shapes", num_inference_steps=8, num_refinements=3, preview_size=64)):
    """The env's arguments (:class:`~promptloop_agents.configs.EnvConfig`, this example's defaults; ``--reward``
    None: toy-fidelity on toy-shapes, JPEG size otherwise), the warm start and the held-out evaluation."""

    warm_start_steps: int = field(default=100, metadata={"help": "supervised warm-start steps"})
    eval_episodes: int = field(default=32, metadata={"help": "held-out episodes per agent"})


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Parse the command line (``Args`` and every ``GRPOConfig`` field), train, evaluate; returns the summaries."""
    torch.set_num_threads(1)
    args, config = parse_configs([Args, GRPOConfig], argv, description=__doc__.split("\n\n")[0])
    if config.output_dir == GRPOConfig.output_dir:  # not chosen: this example's own run folder, never resumed
        config = dataclasses.replace(config, output_dir="runs/grpo_mllm_policy", resume=False)
    if args.reward is None:
        reward = "toy-fidelity" if args.backbone == "toy-shapes" else "jpeg-incompressibility"
        args = dataclasses.replace(args, reward=reward)

    # 1. Warm start: imitate a varied teacher on real previews, so RL starts from a sensible prompt writer.
    train_envs = make_vector_env(config.queries_per_iteration * config.group_size, **args.env_kwargs("random"))
    policy = build_toy_policy("small")
    examples = collect_examples(train_envs, toy_teacher, list(TOY_USER_TRAIN_QUERIES[: 2 * train_envs.num_envs]))
    supervised_finetune(policy, examples, steps=args.warm_start_steps)

    # 2. GRPO: groups of episodes per query, group-normalised terminal reward, clipped ratio, KL anchor.
    GRPOTrainer(policy, config, train_envs, list(TOY_USER_TRAIN_QUERIES)).train()

    # 3. Held-out evaluation, the same (query, seed) episodes for both agents, uniform refinement points.
    eval_envs = make_vector_env(16, **args.env_kwargs("uniform"))
    queries = list(TOY_USER_TEST_QUERIES[: args.eval_episodes])
    seeds = np.arange(len(queries))
    results = evaluate({"identity": IdentityAgent(), "policy": policy}, eval_envs, queries, seeds,
                       {args.reward: make_reward(args.reward_spec())})  # fmt: skip
    summaries = {name: result.summary() for name, result in results.items()}
    for name, summary in summaries.items():
        print(f"{name:10s} {args.reward} {summary[args.reward]}")
    print("a trajectory:", results["policy"].episodes[0].query, "->", results["policy"].episodes[0].prompts)
    return summaries


if __name__ == "__main__":
    main()

"""The policy a run starts from: a saved or hub policy, or the toy policy warm-started by imitation."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from promptloop_agents.configs import parse_dtype
from promptloop_agents.policies.mllm import AGENT_FILE, MLLMAgent
from promptloop_agents.policies.policy_config import PolicyConfig
from promptloop_agents.rollout import num_refinements


def prepare_policy(
    policy: PolicyConfig,
    envs: Any,
    train_queries: list[str],
    run_dir: Path,
    seed: int,
    progress: bool,
    accelerator: Any,
) -> MLLMAgent:
    """Load the policy to train: a saved / hub policy, or the toy policy warm-started on env rollouts.

    The toy warm start runs on the main process only, is saved in ``run_dir/warm_start`` and loaded by every
    process (identical weights on every rank), and is reused when the run resumes.
    """
    settings = {**policy.sampling(), "torch_dtype": parse_dtype(policy.policy_dtype)}
    if policy.policy != "toy":
        return MLLMAgent.from_pretrained(policy.policy, is_trainable=True, **settings)
    warm = run_dir / "warm_start"
    if not (warm / AGENT_FILE).exists() and accelerator.is_main_process:
        from promptloop_agents.policies.toy_policy import SHIPPED_POLICIES

        source = SHIPPED_POLICIES.get(policy.warm_start_from, Path(policy.warm_start_from or "-"))
        if (source / AGENT_FILE).exists():
            shutil.copytree(source, warm)
        else:
            warm_start_toy_policy(policy, envs, train_queries, warm, seed, progress)
    accelerator.wait_for_everyone()
    return MLLMAgent.from_pretrained(warm, **settings)


def warm_start_toy_policy(
    policy: PolicyConfig, envs: Any, train_queries: list[str], folder: Path, seed: int, progress: bool
) -> None:
    """Build the toy policy, fit it to the rewrite teacher on env rollouts and save it (with a report)."""
    from promptloop_agents.learners.sft import (
        collect_examples,
        greedy_match_rate,
        supervised_finetune,
        text_only_examples,
    )
    from promptloop_agents.policies.toy_policy import build_toy_policy
    from promptloop_agents.policies.toy_rewrites import toy_teacher

    agent = build_toy_policy(policy.toy_size, seed=seed, max_new_tokens=policy.max_new_tokens)
    rng = np.random.default_rng(seed)
    episodes = -(-policy.warm_start_episodes // envs.num_envs) * envs.num_envs
    queries = [train_queries[i] for i in rng.integers(len(train_queries), size=episodes)]
    tick = time.perf_counter()
    examples = collect_examples(envs, toy_teacher, queries, seed=seed, targets_per_observation=3)
    rollout_seconds = time.perf_counter() - tick
    per_query = policy.warm_start_text_examples
    examples += text_only_examples(train_queries, toy_teacher, per_query, num_refinements(envs), seed=seed)
    steps, lr = policy.warm_start_steps, policy.warm_start_lr
    losses = supervised_finetune(agent, examples, steps=steps, learning_rate=lr, seed=seed, progress=progress)
    report = {"examples": len(examples), "loss_first": losses[0], "loss_last": float(np.mean(losses[-20:]))}
    report.update(greedy_match=greedy_match_rate(agent, examples), rollout_seconds=rollout_seconds)
    report["sft_seconds"] = time.perf_counter() - tick - rollout_seconds
    agent.save_pretrained(folder)
    (folder / "warm_start.json").write_text(json.dumps(report, indent=2))

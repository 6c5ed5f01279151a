"""``promptloop eval``: agents from their specs, evaluated on every backbone named."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from promptloop_agents.configs import EnvConfig
from promptloop_agents.evaluation.agents import build_agent, load_policies, parse_agent_specs, shipped_policy
from promptloop_agents.evaluation.eval_config import EvalConfig
from promptloop_agents.evaluation.harness import EvalResult
from promptloop_agents.evaluation.suite import evaluate_backbones
from promptloop_agents.policies.policy_config import PolicyConfig


def evaluate_from_configs(
    env: EnvConfig, policy: PolicyConfig, config: EvalConfig
) -> dict[str, dict[str, EvalResult]]:
    """``promptloop eval``: parse ``config.agents``, load the policies on ``config.device`` and evaluate every agent
    on every backbone of ``env.backbone`` (comma-separated); returns ``{backbone: {agent: result}}``.

    ``--policy toy`` (the default) stands for the shipped policy of the (first) backbone's toy world. Policies
    answer greedily unless ``policy.do_sample``.

    Raises:
        ValueError: an unknown agent or mode, a missing policy folder (checked before anything is loaded).
    """
    policy_path = policy.policy
    if policy_path == "toy":
        policy_path = shipped_policy(env.backbone.split(",")[0].strip())
    specs = parse_agent_specs(config.agents, policy_path, policy.mode)
    policies = load_policies(specs, policy, config.resolved_device())

    def agents_for(backbone: str, best_static: Callable) -> dict[str, Any]:
        return {s.name: build_agent(s, config, policies, best_static) for s in specs}

    extra = {"agent_specs": {s.name: dataclasses.asdict(s) for s in specs}, "policy": dataclasses.asdict(policy)}
    return evaluate_backbones(env, config, agents_for, **extra)

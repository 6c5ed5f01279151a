"""The agents of ``promptloop eval --agents``: built-in names, policy folders and their modes, built once."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptloop_agents.configs import parse_dtype
from promptloop_agents.evaluation.eval_config import EvalConfig
from promptloop_agents.policies.baselines import (
    DEFAULT_REWRITE_TEMPLATE,
    BlankPreviews,
    IdentityAgent,
    RandomModifierAgent,
    StaticRewriteAgent,
)
from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.policy_config import PolicyConfig

BUILTIN_AGENTS = {
    "identity": "every action is the query (plain sampling)",
    "static": "the query in --static-template (or --static-policy's one greedy a-priori rewrite), for the whole run",
    "random": "the query with random modifiers at every decision",
    "caption": "toy-compose: the query rewritten once into the world's caption template",
    "best-static": "toy-compose: per query, the best prompt of the rewrite family on --select-seeds other seeds",
    "oracle": "toy-compose: the oracle closed loop (reads previews with the exact analyser); oracle:best-static "
    "starts from the best static rewrite",
    "one-shot": "toy-compose: the best one-shot rewrite a policy can know, per category chosen on training queries "
    "(the shipped toy-compose policy's selection.json)",
    "teacher": "toy-compose: the distillation teacher (one-shot rewrite, then per category the rules chosen on "
    "training queries, reading previews with the exact analyser); teacher:keep|oracle|corrective applies that one "
    "rule set to every category at every refinement whose preview shows objects",
}
POLICY_MODES = ("closed-loop", "a-priori", "blank")


@dataclass(frozen=True)
class AgentSpec:
    """One agent of ``promptloop eval --agents``: ``[name=]target[:mode]``.

    ``target`` is a built-in name (:data:`BUILTIN_AGENTS`), a policy folder, or ``policy`` (the ``--policy``
    path); a policy's ``mode`` is ``closed-loop`` (default), ``a-priori`` (no images: every prompt follows from
    the query) or ``blank`` (closed loop on blank previews,
    :class:`~promptloop_agents.policies.baselines.BlankPreviews`);
    the oracle's is empty or ``best-static`` (its first prompt).
    """

    name: str
    target: str
    mode: str = ""
    policy_path: str | None = None

    @property
    def is_policy(self) -> bool:
        return self.policy_path is not None


def parse_agent_specs(text: str, policy_path: str | None = None, default_mode: str = "closed-loop") -> list[AgentSpec]:
    """The agents of a comma-separated ``--agents`` value, checked before anything is loaded.

    Args:
        text: e.g. ``"identity,best-static,runs/a/policy,blind=runs/a/policy:blank"``.
        policy_path: what ``policy`` / ``policy-a-priori`` stand for (``--policy``), or None.
        default_mode: the mode of a policy given without one (``--mode``).

    Raises:
        ValueError: an unknown agent or mode, a missing policy folder or a repeated name (named in the message).
    """
    specs: list[AgentSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, spec = item.rpartition("=")
        specs.append(_parse_spec(name.strip() or spec, spec.strip(), policy_path, default_mode))
    if not specs:
        raise ValueError("--agents is empty: name at least one agent.")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"Agent names must be unique; got {names}. Name them: 'name=spec'.")
    return specs


def _parse_spec(name: str, spec: str, policy_path: str | None, default_mode: str) -> AgentSpec:
    target, _, mode = spec.partition(":") if not Path(spec).is_dir() else (spec, "", "")
    if target == "policy-a-priori" and not mode:  # the older name of policy:a-priori
        target, mode = "policy", "a-priori"
    if target in BUILTIN_AGENTS:
        allowed = {"oracle": ("best-static",), "teacher": ("keep", "oracle", "corrective")}.get(target, ())
        if mode and mode not in allowed:
            but = f" but {', '.join(repr(m) for m in allowed)}." if allowed else "."
            raise ValueError(f"Agent {spec!r}: {target!r} takes no mode{but}")
        return AgentSpec(name, target, mode)
    if target == "policy":
        if not policy_path or policy_path == "toy":
            raise ValueError(f"Agent {spec!r} needs --policy PATH (a policy folder or hub id).")
        path = policy_path
    elif Path(target).is_dir():
        path = target
    else:
        valid = ", ".join(BUILTIN_AGENTS)
        raise ValueError(
            f"Unknown agent {spec!r}: not a built-in agent ({valid}) and no policy folder {target!r} exists. "
            "A policy is PATH, PATH:a-priori or PATH:blank; name any agent with 'name=spec'."
        )
    mode = mode or default_mode
    if mode not in POLICY_MODES:
        raise ValueError(f"Agent {spec!r}: unknown policy mode {mode!r}; valid: {', '.join(POLICY_MODES)}.")
    return AgentSpec(name, "policy", mode, str(path))


def load_policies(specs: list[AgentSpec], policy: PolicyConfig, device: str) -> dict[str, MLLMAgent]:
    """Each policy folder of ``specs`` loaded once (closed loop; the modes share its weights)."""
    sampling = {key: getattr(policy, key) for key in ("temperature", "top_k", "top_p", "do_sample")}
    dtype = parse_dtype(policy.policy_dtype)
    paths = dict.fromkeys(s.policy_path for s in specs if s.is_policy)
    return {
        path: MLLMAgent.from_pretrained(path, torch_dtype=dtype, device=device, mode="closed-loop", **sampling)
        for path in paths
    }


def build_agent(spec: AgentSpec, config: EvalConfig, policies: dict[str, MLLMAgent], best_static: Callable) -> Any:
    """The agent of ``spec``; ``best_static()`` gives ``{query: prompt}`` of the backbone under evaluation."""
    from promptloop_agents.policies import compose_reference as compose_oracle

    if spec.is_policy:
        loaded = policies[spec.policy_path]
        if spec.mode == "a-priori":
            return MLLMAgent(loaded.model, loaded.processor, **{**loaded.settings(), "mode": "a-priori"})
        return BlankPreviews(loaded, config.blank_value) if spec.mode == "blank" else loaded
    if spec.target == "identity":
        return IdentityAgent()
    if spec.target == "static":
        if config.static_policy:
            key = f"static:{config.static_policy}"  # loaded once for all backbones
            if key not in policies:
                device = config.resolved_device()
                policies[key] = MLLMAgent.from_pretrained(config.static_policy, do_sample=False, device=device)
            return StaticRewriteAgent(rewriter=lambda q, r=policies[key]: r.plan(q, [0.0])[0])
        return StaticRewriteAgent(template=config.static_template or DEFAULT_REWRITE_TEMPLATE)
    if spec.target == "random":
        return RandomModifierAgent(seed=config.seed)
    if spec.target == "caption":
        return StaticRewriteAgent(rewriter=compose_oracle.caption_rewrite)
    if spec.target == "best-static":
        return StaticRewriteAgent(rewriter=best_static().__getitem__)
    if spec.target in ("one-shot", "teacher"):
        from promptloop_agents.policies.compose_teacher import CategoryRewriteAgent, ComposeTeacher, load_selection
        from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY as shipped
        from promptloop_env.toy.compose import CATEGORIES

        if spec.target == "one-shot":
            return CategoryRewriteAgent(load_selection(shipped))
        if spec.mode:  # one rule set for every category, on every preview that shows objects
            return ComposeTeacher(load_selection(shipped), dict.fromkeys(CATEGORIES, spec.mode), min_timestep=0.0)
        rules = json.loads((shipped / "teacher_rules.json").read_text())["rules"]
        return ComposeTeacher(load_selection(shipped), rules)
    first = best_static().__getitem__ if spec.mode == "best-static" else None
    return compose_oracle.ComposeOracleAgent(first=first)

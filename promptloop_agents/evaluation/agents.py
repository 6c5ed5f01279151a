"""The agents of ``promptloop eval --agents``: a registry of built-in agents, policy folders and their modes.

A built-in agent is one entry of :data:`EVAL_AGENTS` (the env's :class:`~promptloop_env.registry.Registry`:
name -> :class:`EvalAgent`, a factory and the one-line description ``--agents --help`` lists). Anything else in
``--agents`` is a policy folder (or ``policy``, the ``--policy`` path), optionally with a mode. Policies are
loaded once and shared by their modes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
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
from promptloop_env.registry import Registry

POLICY_MODES = ("closed-loop", "a-priori", "blank")


@dataclass
class AgentContext:
    """What a built-in agent's factory may use: the eval config, the loaded policies (shared across backbones) and
    ``best_static()`` (``{query: prompt}`` of the backbone under evaluation, computed on first use)."""

    config: EvalConfig
    policies: dict[str, MLLMAgent]
    best_static: Callable[[], dict[str, str]]


@dataclass(frozen=True)
class EvalAgent:
    """A built-in agent of ``promptloop eval``: ``factory(mode, context) -> agent`` and its description.

    Args:
        factory: builds the agent; ``mode`` is the text after ``name:`` (empty when none is given).
        description: one line for ``--agents --help`` and the docs.
        modes: the modes the agent accepts (none by default).
    """

    factory: Callable[[str, AgentContext], Any]
    description: str
    modes: tuple[str, ...] = field(default=())


def _static(mode: str, context: AgentContext) -> StaticRewriteAgent:
    config, policies = context.config, context.policies
    if not config.static_policy:
        return StaticRewriteAgent(template=config.static_template or DEFAULT_REWRITE_TEMPLATE)
    key = f"static:{config.static_policy}"  # loaded once for all backbones
    if key not in policies:
        device = config.resolved_device()
        policies[key] = MLLMAgent.from_pretrained(config.static_policy, do_sample=False, device=device)
    return StaticRewriteAgent(rewriter=lambda q, r=policies[key]: r.plan(q, [0.0])[0])


def _caption(mode: str, context: AgentContext) -> StaticRewriteAgent:
    from promptloop_agents.policies.compose_reference import caption_rewrite

    return StaticRewriteAgent(rewriter=caption_rewrite)


def _oracle(mode: str, context: AgentContext) -> Any:
    from promptloop_agents.policies.compose_reference import ComposeOracleAgent

    return ComposeOracleAgent(first=context.best_static().__getitem__ if mode == "best-static" else None)


def _one_shot(mode: str, context: AgentContext) -> Any:
    from promptloop_agents.policies.compose_teacher import CategoryRewriteAgent, load_selection
    from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY

    return CategoryRewriteAgent(load_selection(SHIPPED_TOY_COMPOSE_POLICY))


def _teacher(mode: str, context: AgentContext) -> Any:
    from promptloop_agents.policies.compose_teacher import ComposeTeacher, load_selection
    from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY as shipped
    from promptloop_env.toy.compose import CATEGORIES

    if mode:  # one rule set for every category, on every preview that shows objects
        return ComposeTeacher(load_selection(shipped), dict.fromkeys(CATEGORIES, mode), min_timestep=0.0)
    rules = json.loads((shipped / "teacher_rules.json").read_text())["rules"]
    return ComposeTeacher(load_selection(shipped), rules)


EVAL_AGENTS: Registry[EvalAgent] = Registry(
    "agent", hint="A policy is PATH, PATH:a-priori or PATH:blank; name any agent with 'name=spec'."
)
"""Built-in agents of ``promptloop eval --agents``: name -> :class:`EvalAgent`; ``EVAL_AGENTS.register(name,
EvalAgent(factory, description))`` adds one (its description then appears in ``--agents --help``)."""

EVAL_AGENTS.register(
    "identity", EvalAgent(lambda mode, context: IdentityAgent(), "every prompt is the query (plain sampling)")
)
EVAL_AGENTS.register(
    "static",
    EvalAgent(_static, "the query in --static-template (or --static-policy's greedy a-priori rewrite), the whole run"),
)
EVAL_AGENTS.register(
    "random",
    EvalAgent(
        lambda mode, context: RandomModifierAgent(seed=context.config.seed),
        "the query with random modifiers at every decision",
    ),
)
EVAL_AGENTS.register(
    "one-shot",
    EvalAgent(
        _one_shot,
        "toy-compose: the best one-shot rewrite a policy can know (per category, chosen on training queries)",
    ),
)
EVAL_AGENTS.register(
    "teacher",
    EvalAgent(
        _teacher,
        "toy-compose: the distillation teacher (one-shot rewrite, then per-category rules reading previews "
        "exactly); teacher:keep|oracle|corrective applies one rule set everywhere",
        modes=("keep", "oracle", "corrective"),
    ),
)
EVAL_AGENTS.register(
    "caption", EvalAgent(_caption, "toy-compose: the query rewritten once into the world's caption template")
)
EVAL_AGENTS.register(
    "best-static",
    EvalAgent(
        lambda mode, context: StaticRewriteAgent(rewriter=context.best_static().__getitem__),
        "toy-compose: per query, the best rewrite of the family on --select-seeds other seeds",
    ),
)
EVAL_AGENTS.register(
    "oracle",
    EvalAgent(
        _oracle,
        "toy-compose: the oracle closed loop (reads previews exactly); oracle:best-static starts from best-static",
        modes=("best-static",),
    ),
)


def agents_help() -> str:
    """The ``--agents`` help: every built-in agent with its description, then the policy forms."""
    lines = [f"{name}: {entry.description}" for name, entry in EVAL_AGENTS.items()]
    lines.append(
        "PATH (a policy folder, closed loop), PATH:a-priori (no images) or PATH:blank (closed loop on blank "
        "previews); policy[:mode] = the --policy path (--policy toy: the backbone's shipped toy policy)"
    )
    return "Comma-separated agents, each [name=]spec. " + "; ".join(lines) + "."


@dataclass(frozen=True)
class AgentSpec:
    """One agent of ``promptloop eval --agents``: ``[name=]target[:mode]``.

    ``target`` is a built-in name (:data:`EVAL_AGENTS`), a policy folder, or ``policy`` (the ``--policy``
    path); a policy's ``mode`` is ``closed-loop`` (default), ``a-priori`` (no images: every prompt follows from
    the query) or ``blank`` (closed loop on blank previews,
    :class:`~promptloop_agents.policies.baselines.BlankPreviews`); a built-in's is one of its ``modes``.
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
        text: e.g. ``"identity,one-shot,runs/a/policy,blind=runs/a/policy:blank"``.
        policy_path: what ``policy`` / ``policy-a-priori`` stand for (``--policy``), or None.
        default_mode: the mode of a policy given without one (``--mode``).

    Raises:
        ValueError: an unknown agent or mode, a missing policy folder or a repeated name (named in the message).

    >>> [(s.name, s.target, s.mode) for s in parse_agent_specs("identity,t=teacher:keep")]
    [('identity', 'identity', ''), ('t', 'teacher', 'keep')]
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
    if target in EVAL_AGENTS:
        allowed = EVAL_AGENTS[target].modes
        if mode and mode not in allowed:
            but = f" but {', '.join(repr(m) for m in allowed)}." if allowed else "."
            raise ValueError(f"Agent {spec!r}: {target!r} takes no mode{but}")
        return AgentSpec(name, target, mode)
    if target == "policy":
        if not policy_path:
            raise ValueError(f"Agent {spec!r} needs --policy PATH (a policy folder or hub id).")
        if not Path(policy_path).is_dir() and not _looks_like_hub_id(policy_path):
            raise FileNotFoundError(f"Policy folder {policy_path!r} (--policy) not found.")
        path = policy_path
    elif Path(target).is_dir():
        path = target
    else:
        valid = ", ".join(EVAL_AGENTS)
        raise ValueError(
            f"Unknown agent {spec!r}: not a built-in agent ({valid}) and no policy folder {target!r} exists. "
            "A policy is PATH, PATH:a-priori or PATH:blank; name any agent with 'name=spec'."
        )
    mode = mode or default_mode
    if mode not in POLICY_MODES:
        raise ValueError(f"Agent {spec!r}: unknown policy mode {mode!r}; valid: {', '.join(POLICY_MODES)}.")
    return AgentSpec(name, "policy", mode, str(path))


def _looks_like_hub_id(text: str) -> bool:
    """``org/name`` (one slash, no leading dot, slash or tilde): a hub id rather than a local path.

    >>> _looks_like_hub_id("Qwen/Qwen2.5-VL-3B-Instruct"), _looks_like_hub_id("./runs/a/policy")
    (True, False)
    """
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and all(text.split("/"))


def shipped_policy(backbone: str) -> str:
    """The policy folder ``--policy toy`` stands for in ``promptloop eval``: the shipped policy of the backbone's
    toy world (``toy-compose``: the distilled closed loop; otherwise the toy-shapes policy)."""
    from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY, SHIPPED_TOY_POLICY

    return str(SHIPPED_TOY_COMPOSE_POLICY if backbone.startswith("toy-compose") else SHIPPED_TOY_POLICY)


def load_policies(specs: list[AgentSpec], policy: PolicyConfig, device: str) -> dict[str, MLLMAgent]:
    """Each policy folder of ``specs`` loaded once (closed loop; the modes share its weights).

    Greedy unless ``policy.do_sample``; a sampling policy keeps its saved temperature unless
    ``policy.temperature`` is set.
    """
    sampling: dict[str, Any] = {"top_k": policy.top_k, "top_p": policy.top_p, "do_sample": policy.do_sample}
    if policy.temperature is not None:
        sampling["temperature"] = policy.temperature
    dtype = parse_dtype(policy.policy_dtype)
    paths = dict.fromkeys(s.policy_path for s in specs if s.is_policy)
    return {
        path: MLLMAgent.from_pretrained(path, torch_dtype=dtype, device=device, mode="closed-loop", **sampling)
        for path in paths
    }


def build_agent(spec: AgentSpec, config: EvalConfig, policies: dict[str, MLLMAgent], best_static: Callable) -> Any:
    """The agent of ``spec``; ``best_static()`` gives ``{query: prompt}`` of the backbone under evaluation."""
    if not spec.is_policy:
        return EVAL_AGENTS[spec.target].factory(spec.mode, AgentContext(config, policies, best_static))
    loaded = policies[spec.policy_path]
    if spec.mode == "a-priori":
        return MLLMAgent(loaded.model, loaded.processor, **{**loaded.settings(), "mode": "a-priori"})
    return BlankPreviews(loaded, config.blank_value) if spec.mode == "blank" else loaded


def sampling_description(agent: Any) -> str:
    """How ``agent`` chose its prompts, for ``eval.md`` / ``eval.json``: ``greedy``, ``sampled at temperature
    T`` (with top-k / top-p when set), or ``deterministic`` / ``seeded random`` for rule-based agents.

    >>> sampling_description(IdentityAgent()), sampling_description(RandomModifierAgent())
    ('deterministic', 'seeded random')
    """
    agent = getattr(agent, "agent", agent)  # BlankPreviews wraps a policy
    if isinstance(agent, RandomModifierAgent):
        return "seeded random"
    if not hasattr(agent, "do_sample"):
        return "deterministic"
    if not agent.do_sample:
        return "greedy"
    extra = (f", top-k {agent.top_k}" if agent.top_k else "") + (f", top-p {agent.top_p}" if agent.top_p < 1 else "")
    return f"sampled at temperature {agent.temperature:g}{extra}"

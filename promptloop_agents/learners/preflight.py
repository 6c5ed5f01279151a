"""Failures before compute: what a training run needs, checked at start-up in seconds.

- :func:`check_prompt_sets`: a real diffusion backbone trained (or monitored) on a toy world's queries is refused,
  with the real prompt sets named.
- :func:`check_weights`: every model the run will load (the backbone, the policy and its base, the training
  reward's and the held-out metrics' weights) is found in a local folder or the hub cache, or the hub can be
  reached to download it; otherwise one :class:`~promptloop_env.rewards.MissingWeightsError` names each id,
  where it was looked for and the ``hf download`` command that fetches it.

Nothing here loads a weight: folders and the hub cache are looked at, and the hub is asked once (a few seconds
at most) only when something is missing and downloads are allowed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REAL_PROMPT_SETS = ("pickapic-train", "pickapic-test", "geneval-train", "geneval", "parti", "drawbench")
"""The real prompt sets a GPU recipe trains and evaluates on (Pick-a-Pic v2 is the paper's training distribution)."""
TOY_PROMPT_PREFIX = "toy-"


@dataclass(frozen=True)
class ModelSource:
    """One model a run needs: what it is for (``role``) and its hub id or local path."""

    role: str
    source: str


def is_toy_backbone(backbone: str) -> bool:
    """Whether ``backbone`` is built in code or shipped in the package (a toy world or the tiny test pipeline)."""
    from promptloop_env.backbones import backbone_entry

    try:
        entry = backbone_entry(backbone)
    except (KeyError, ValueError, FileNotFoundError):
        return False
    return type(entry).__name__ in ("PipelineFactory", "PackageFolder")


def check_prompt_sets(env: Any, grpo: Any) -> None:
    """Refuse a real backbone with a toy world's prompt set (training, or held-out when ``eval_every``).

    Raises:
        ValueError: naming the set, the backbone and the real sets to use instead.
    """
    if is_toy_backbone(env.backbone):
        return
    used = {"train_prompts": grpo.train_prompts}
    if grpo.eval_every:
        used["eval_prompts"] = grpo.eval_prompts
    for field, name in used.items():
        if str(name).startswith(TOY_PROMPT_PREFIX) and not Path(name).is_file():
            raise ValueError(
                f"{field}={name!r} is a toy world's prompt set, but backbone={env.backbone!r} is a real model: it "
                f"would learn from toy scenes' captions. Use a real set ({', '.join(REAL_PROMPT_SETS)}) or a text "
                f"file with one query per line, e.g. --{field.replace('_', '-')} "
                f"{'pickapic-train' if field == 'train_prompts' else 'pickapic-test'}."
            )


def required_models(env: Any, policy: Any, grpo: Any) -> list[ModelSource]:
    """Every hub id or local path the run will load, with its role (toy and built-in models need none)."""
    sources: list[ModelSource] = []
    if not is_toy_backbone(env.backbone):
        from promptloop_env.backbones import backbone_entry

        try:
            entry = backbone_entry(env.backbone)
            sources.append(ModelSource("backbone", getattr(entry, "repo_id", None) or str(entry.source)))
        except (KeyError, ValueError, FileNotFoundError):
            sources.append(ModelSource("backbone", env.backbone))
    if policy.policy != "toy":
        sources += _policy_sources(policy.policy)
    from promptloop_agents.configs import parse_reward

    spec = parse_reward(env.reward)
    rewards = [("reward", name) for name in ([spec] if isinstance(spec, str) else spec)]
    if grpo.eval_every:
        rewards += [("eval metric", n.strip()) for n in grpo.eval_metrics.split(",") if n.strip()]
    for role, name in rewards:
        sources += [ModelSource(f"{role} {name}", value) for value in reward_sources(name)]
    return list(dict.fromkeys(sources))


def _policy_sources(path: str) -> list[ModelSource]:
    from promptloop_agents.policies.mllm import AGENT_FILE

    agent_file = Path(path) / AGENT_FILE
    if not agent_file.is_file():
        return [ModelSource("policy", path)]
    base = json.loads(agent_file.read_text()).get("base_name_or_path")
    if not base or (Path(path) / base).is_dir():
        return []  # self-contained policy folder
    return [ModelSource("policy base", base)]


def reward_sources(name: str) -> list[str]:
    """The hub ids and paths a registered reward reads (none for weight-free rewards); nothing is loaded."""
    from promptloop_env.rewards import REWARDS
    from promptloop_env.rewards.model_base import ModelReward

    if name not in REWARDS:
        return []  # unknown names are the env's to refuse, with the list of valid ones
    # Constructing a reward is cheap by the registry's contract: model-based ones load their weights in load().
    reward = REWARDS[name](device="cpu")
    if not isinstance(reward, ModelReward):
        return []
    return [value for value in reward.sources().values() if value]


def hub_cache_dir() -> Path:
    """The hub cache folder (``HF_HUB_CACHE``, ``HF_HOME/hub`` or ``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def _found(source: str, cache: Path) -> str | None:
    """Where ``source`` is (a local path, or a snapshot in the hub cache), or None."""
    if Path(source).exists():
        return source
    if source.startswith(("/", ".", "~")) or source.count("/") != 1:
        return None  # a path, not a hub id
    snapshots = cache / f"models--{source.replace('/', '--')}" / "snapshots"
    return str(snapshots) if snapshots.is_dir() and any(snapshots.iterdir()) else None


def check_weights(env: Any, policy: Any, grpo: Any, cache_dir: str | Path | None = None) -> None:
    """Raise one :class:`MissingWeightsError` naming every model of the run that can be neither found nor fetched.

    A hub id that is not in the cache is fine when downloads are allowed and the hub answers (asked once).
    """
    from promptloop_env.rewards.model_base import MissingWeightsError, hub_offline

    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    roles: dict[str, list[str]] = {}
    for model in required_models(env, policy, grpo):  # one line per id, naming everything that needs it
        roles.setdefault(model.source, []).append(model.role)
    needed = [ModelSource(", ".join(dict.fromkeys(r)), source) for source, r in roles.items()]
    missing = [model for model in needed if _found(model.source, cache) is None]
    if not missing:
        return
    hub_ids = [m for m in missing if not m.source.startswith(("/", ".", "~")) and m.source.count("/") == 1]
    why = "HF_HUB_OFFLINE is set" if hub_offline() else None
    if why is None and hub_ids:
        from promptloop_env.rewards.model_base import hub_unreachable

        why = hub_unreachable(timeout=5.0)
    if why is None:  # the hub answers: from_pretrained downloads what is not cached
        missing = [m for m in missing if m not in hub_ids]
        if not missing:
            return
    lines = []
    for model in missing:
        if model in hub_ids:
            lines.append(
                f"  - {model.role}: {model.source!r}, looked for in the hub cache {cache} (and as a local folder); "
                f"fetch it with `hf download {model.source}`"
            )
        else:
            lines.append(f"  - {model.role}: {model.source!r}: no such file or folder")
    reason = f" ({why})" if why else ""
    raise MissingWeightsError(
        f"This run needs {len(missing)} model(s) that cannot be found or downloaded{reason}:\n" + "\n".join(lines)
    )


def preflight(env: Any, policy: Any, grpo: Any, cache_dir: str | Path | None = None) -> None:
    """:func:`check_prompt_sets` then :func:`check_weights`: everything that would fail later, failing now."""
    check_prompt_sets(env, grpo)
    check_weights(env, policy, grpo, cache_dir)

"""Run configurations: the shared machinery of the config dataclasses, the env section, and YAML recipes.

A run is described by sections, each a dataclass beside its owner whose fields carry their help text once:
``env`` (:class:`EnvConfig`, here), ``policy`` (:mod:`promptloop_agents.policies.policy_config`), ``grpo``
(:mod:`promptloop_agents.learners.grpo_config`) and ``eval`` (:mod:`promptloop_agents.evaluation.eval_config`).
A recipe (``recipes/*.yaml``) holds any subset of them; ``promptloop train --config recipe.yaml --flag value``
reads the file and lets flags override it, and the run folder gets the resolved ``config.yaml``, which can be
passed back with ``--config``.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from promptloop_env.config import config_field as env_config_field
from promptloop_env.config import env_field

T = TypeVar("T")
CONFIG_FILE = "config.yaml"


def config_field(default: Any, help: str) -> Any:  # noqa: A002  (the argparse word)
    """A dataclass field whose help text is the CLI's (read by ``HfArgumentParser``)."""
    return env_field(default, help)


def parse_reward(text: str) -> str | dict[str, float]:
    """A reward name, or ``"name:weight,name:weight"`` as the env's ``{name: weight}`` dict.

    >>> parse_reward("toy-fidelity"), parse_reward("toy-fidelity:1,toy-aesthetic:0.5")
    ('toy-fidelity', {'toy-fidelity': 1.0, 'toy-aesthetic': 0.5})
    """
    if ":" not in text and "," not in text:
        return text
    parts = [part.partition(":") for part in text.split(",") if part.strip()]
    return {name.strip(): float(weight or 1.0) for name, _, weight in parts}


def parse_dtype(name: str | None) -> torch.dtype | None:
    """``"bfloat16"`` / ``"bf16"`` / ``"float16"`` / ``"fp16"`` / ``"float32"`` as a torch dtype; None stays None.

    >>> parse_dtype("bf16"), parse_dtype(None)
    (torch.bfloat16, None)
    """
    if not name:
        return None
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    dtype = getattr(torch, aliases.get(name, name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"Unknown dtype {name!r}; use bfloat16, float16 or float32.")
    return dtype


@dataclass
class EnvConfig:
    """Which env the agents talk to (``gym.make_vec("PromptLoop-v0", ...)``) and where it runs.

    Its fields are the env's own arguments (:class:`promptloop_env.config.PromptLoopConfig`, whose help they
    repeat), in their command-line form (text), plus where model-based rewards run. Recipes written with the old
    names ``backbone_device`` / ``backbone_dtype`` are read as ``device`` / ``torch_dtype``, with a warning.
    """

    _argument_group_name = "environment"

    backbone: str = env_config_field("backbone", "toy-compose")
    reward: str | None = env_config_field(
        "reward", help_suffix="On the command line: a name, or weighted names 'toy-compose:1,toy-compose-soft:0.5'."
    )
    num_inference_steps: int = env_config_field("num_inference_steps")
    num_refinements: int = env_config_field("num_refinements")
    refine_schedule: str | None = env_config_field(
        "refine_schedule", None, "None: the command's own ('random' to train, 'uniform' to evaluate)."
    )
    guidance_scale: float | None = env_config_field("guidance_scale")
    negative_prompt: str | None = env_config_field("negative_prompt")
    preview: str = env_config_field("preview")
    preview_size: int = env_config_field("preview_size")
    taesd: str | None = env_config_field("taesd")
    device: str | None = env_config_field("device", help_suffix="None: this process's device.")
    torch_dtype: str | None = env_config_field("torch_dtype")
    local_files_only: bool = env_config_field("local_files_only")
    cpu_offload: bool = env_config_field("cpu_offload")
    reward_device: str | None = env_field(None, "Device of model-based rewards; default: the backbone's.")
    reward_dtype: str | None = env_field(None, "Precision of model-based rewards; default: the backbone's.")

    def env_kwargs(
        self, refine_schedule: str | None = None, device: str | torch.device | None = None
    ) -> dict[str, Any]:
        """Keyword arguments for ``gym.make_vec`` / :func:`promptloop_agents.rollout.make_vector_env`.

        Args:
            refine_schedule: the command's schedule, used when this config's ``refine_schedule`` is None
                (``"random"`` to train, ``"uniform"`` to evaluate; None: the env's default).
            device: the process's device, used where ``device`` is unset.
        """
        names = ("backbone", "num_inference_steps", "num_refinements", "guidance_scale", "negative_prompt")
        kwargs: dict[str, Any] = {name: getattr(self, name) for name in names}
        kwargs.update(preview=self.preview, preview_size=self.preview_size, reward=self.reward_spec(device))
        schedule = self.refine_schedule or refine_schedule
        if schedule is not None:
            kwargs["refine_schedule"] = schedule
        own = self.device if self.device not in (None, "auto") else None  # "auto": the eval section's shared word
        if own or device is not None:
            kwargs["device"] = str(own or device)
        # Only what is set is passed, so that a backbone object given to the env keeps its own placement.
        optional = {"taesd": self.taesd, "local_files_only": self.local_files_only, "cpu_offload": self.cpu_offload}
        kwargs.update({name: value for name, value in optional.items() if value})
        if self.torch_dtype:
            kwargs["torch_dtype"] = parse_dtype(self.torch_dtype)
        return kwargs

    def reward_spec(self, device: str | torch.device | None = None) -> Any:
        """The env's ``reward`` argument: None (the world's own), the spec, or rewards built on their own device."""
        if self.reward is None:
            return None
        spec = parse_reward(self.reward)
        if not (self.reward_device or self.reward_dtype):
            return spec  # the env builds them next to the backbone
        from promptloop_env.rewards import make_reward

        where = self.reward_device or (self.device if self.device != "auto" else None) or device
        built = make_reward(spec, device=where, torch_dtype=parse_dtype(self.reward_dtype or self.torch_dtype))
        return {(name, fn): weight for name, fn, weight in built.parts}  # names kept in info["reward_components"]


# Fields that may change when a run resumes (bookkeeping, not the experiment).
RESUMABLE_FIELDS = {"max_steps", "max_train_seconds", "save_every", "keep_checkpoints", "resume"}
RESUMABLE_FIELDS |= {"allow_config_change", "progress", "report_to", "log_samples_every", "output_dir"}


def config_from_args(config_class: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``config_class`` from parsed arguments (fields it does not have are ignored)."""
    names = [f.name for f in dataclasses.fields(config_class) if f.init]
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return config_class(**{**values, **overrides})


def config_sections() -> dict[str, type]:
    """Every config section by name (``env``, ``policy``, ``grpo``, ``eval``): the sections a config file may hold."""
    from promptloop_agents.evaluation.eval_config import EvalConfig
    from promptloop_agents.learners.grpo_config import GRPOConfig
    from promptloop_agents.policies.policy_config import PolicyConfig

    return {"env": EnvConfig, "policy": PolicyConfig, "grpo": GRPOConfig, "eval": EvalConfig}


def read_config_file(path: str | Path, sections: tuple[str, ...]) -> dict[str, Any]:
    """Flat ``{field: value}`` of the given sections of a YAML (or JSON) config with ``env:`` / ``policy:`` /
    ``grpo:`` / ``eval:`` sections (other sections are skipped, so ``eval`` reads a training config).

    Raises:
        ValueError: an unknown section or field (named in the message).
    """
    from promptloop_env.cli import config_values
    from promptloop_env.cli import read_config_file as read_mapping

    try:
        known = config_sections()
        return config_values(read_mapping(path), [known[s] for s in sections], sections=known)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def config_dict(**configs: Any) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}`` of config objects."""
    return {name: dataclasses.asdict(config) for name, config in configs.items()}


def save_config(path: str | Path, **configs: Any) -> None:
    """Write configs as one YAML file with a section per config; :func:`read_config_file` reads it back."""
    import yaml

    Path(path).write_text(yaml.safe_dump(config_dict(**configs), sort_keys=False))


def config_changes(saved: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> list[str]:
    """Fields that differ between a saved and a current config, as ``"section.field: old -> new"``.

    Bookkeeping fields (:data:`RESUMABLE_FIELDS`) are ignored.

    >>> config_changes({"grpo": {"beta": 0.04, "max_steps": 10}}, {"grpo": {"beta": 0.0, "max_steps": 20}})
    ['grpo.beta: 0.04 -> 0.0']
    """
    changes = []
    for section, values in current.items():
        before = saved.get(section, {})
        for key, value in values.items():
            if key in RESUMABLE_FIELDS or key not in before:
                continue
            if before[key] != value:
                changes.append(f"{section}.{key}: {before[key]!r} -> {value!r}")
    return changes

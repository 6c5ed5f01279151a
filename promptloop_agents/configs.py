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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")
CONFIG_FILE = "config.yaml"


def config_field(default: Any, help: str) -> Any:  # noqa: A002  (the argparse word)
    """A dataclass field whose help text is the CLI's (read by ``HfArgumentParser``)."""
    return field(default=default, metadata={"help": help})


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
    """Which env the agents talk to (passed to ``gym.make_vec("PromptLoop-v0", ...)``) and where it runs."""

    _argument_group_name = "environment"

    backbone: str = config_field("toy-shapes", "Diffusion backbone: registry name, hub id or local pipeline folder.")
    reward: str = config_field(
        "toy-fidelity", "Training reward: a registry name, or weighted names 'toy-fidelity:1,toy-aesthetic:0.5'."
    )
    num_inference_steps: int = config_field(20, "Denoising steps per episode.")
    num_refinements: int = config_field(5, "N_R: how many prompts the agent writes per episode.")
    guidance_scale: float | None = config_field(None, "Classifier-free guidance scale; default: the backbone's.")
    preview: str = config_field("vae", "Preview decoder shown to the policy: vae | taesd | latent_rgb | none.")
    preview_size: int = config_field(256, "Side in pixels of the preview images (the env's default).")
    backbone_device: str | None = config_field(
        None, "Device of the diffusion backbone; default: this process's device."
    )
    backbone_dtype: str | None = config_field(
        None, "Backbone precision: float16 | bfloat16 | float32 (default: float32)."
    )
    reward_device: str | None = config_field(None, "Device of model-based rewards; default: the backbone's.")
    reward_dtype: str | None = config_field(None, "Precision of model-based rewards; default: the backbone's.")
    cpu_offload: bool = config_field(
        False, "Offload backbone components to the CPU between uses (needs an accelerator)."
    )

    def env_kwargs(self, refine_schedule: str, device: str | torch.device | None = None) -> dict[str, Any]:
        """Keyword arguments for ``gym.make_vec`` / :func:`promptloop_agents.rollout.make_vector_env`.

        Args:
            refine_schedule: ``"random"`` (training) or ``"uniform"`` (evaluation).
            device: the process's device, used where ``backbone_device`` is unset.
        """
        kwargs: dict[str, Any] = {"backbone": self.backbone, "reward": self.reward_spec(device)}
        kwargs.update(num_inference_steps=self.num_inference_steps, num_refinements=self.num_refinements)
        kwargs.update(guidance_scale=self.guidance_scale, preview=self.preview, preview_size=self.preview_size)
        kwargs["refine_schedule"] = refine_schedule
        backbone_device = self.backbone_device or device
        if backbone_device is not None:
            kwargs["device"] = str(backbone_device)
        if self.backbone_dtype:
            kwargs["torch_dtype"] = parse_dtype(self.backbone_dtype)
        if self.cpu_offload:  # only passed when asked for, so that backbones without it keep working
            kwargs["cpu_offload"] = True
        return kwargs

    def reward_spec(self, device: str | torch.device | None = None) -> Any:
        """The env's ``reward`` argument: the spec itself, or rewards built on their own device / dtype."""
        spec = parse_reward(self.reward)
        if not (self.reward_device or self.reward_dtype):
            return spec  # the env builds them next to the backbone
        from promptloop_env.rewards import make_reward

        where = self.reward_device or self.backbone_device or device
        built = make_reward(spec, device=where, torch_dtype=parse_dtype(self.reward_dtype or self.backbone_dtype))
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

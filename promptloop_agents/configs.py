"""Run configurations: dataclasses whose fields carry their help text once, YAML recipes, and the CLI parsers.

A run is described by three sections, ``env``, ``policy`` and ``grpo`` (``eval`` for evaluation). A recipe
(``recipes/*.yaml``) holds any subset of them; ``promptloop train --config recipe.yaml --flag value`` reads
the file and lets flags override it, and the run folder gets the resolved ``config.yaml``, which can be
passed back with ``--config``.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch

T = TypeVar("T")
CONFIG_FILE = "config.yaml"


def _opt(default: Any, help: str) -> Any:  # noqa: A002  (the argparse word)
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

    backbone: str = _opt("toy-shapes", "Diffusion backbone: registry name, hub id or local pipeline folder.")
    reward: str = _opt(
        "toy-fidelity", "Training reward: a registry name, or weighted names 'toy-fidelity:1,toy-aesthetic:0.5'."
    )
    num_inference_steps: int = _opt(20, "Denoising steps per episode.")
    num_refinements: int = _opt(5, "N_R: how many prompts the agent writes per episode.")
    guidance_scale: float | None = _opt(None, "Classifier-free guidance scale; default: the backbone's.")
    preview: str = _opt("vae", "Preview decoder shown to the policy: vae | taesd | latent_rgb | none.")
    preview_size: int = _opt(64, "Side in pixels of the preview images.")
    backbone_device: str | None = _opt(None, "Device of the diffusion backbone; default: this process's device.")
    backbone_dtype: str | None = _opt(None, "Backbone precision: float16 | bfloat16 | float32 (default: float32).")
    reward_device: str | None = _opt(None, "Device of model-based rewards; default: the backbone's.")
    reward_dtype: str | None = _opt(None, "Precision of model-based rewards; default: the backbone's.")
    cpu_offload: bool = _opt(False, "Offload backbone components to the CPU between uses (needs an accelerator).")

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


@dataclass
class PolicyConfig:
    """Which policy to train or evaluate, its precision, and how it samples."""

    _argument_group_name = "policy"

    policy: str = _opt("toy", "'toy' (build the toy-world policy and warm-start it), a policy folder or a hub id.")
    policy_dtype: str | None = _opt(None, "Policy precision: bfloat16 | float16 | float32 (default: as saved).")
    toy_size: str = _opt("small", "Toy policy size: tiny | small | compose (a wider vision tower).")
    warm_start_episodes: int = _opt(64, "Toy warm start: env episodes rolled out with the rewrite teacher.")
    warm_start_text_examples: int = _opt(4, "Toy warm start: preview-free examples per training query.")
    warm_start_steps: int = _opt(600, "Toy warm start: supervised steps (batch 32).")
    warm_start_lr: float = _opt(2e-3, "Toy warm start: learning rate.")
    warm_start_from: str = _opt(
        "",
        "Toy policy: start from this warm-started policy folder if it exists; 'shipped' (toy-shapes) and "
        "'toy-compose' (the distilled oracle) name the package's own.",
    )
    temperature: float = _opt(1.0, "Sampling temperature of the policy (training and evaluation).")
    top_k: int = _opt(0, "Sample from the k most likely tokens only (0 = all); enters the training log-probs.")
    top_p: float = _opt(1.0, "Nucleus sampling mass (1 = all); enters the training log-probs.")
    max_new_tokens: int = _opt(24, "Longest answer the policy may write, in tokens.")
    image_size: int | None = _opt(None, "Resize previews to this square size before the processor (default: as is).")
    mode: str = _opt("closed-loop", "closed-loop (preview at every refinement) | a-priori (no images).")
    do_sample: bool = _opt(True, "Evaluation: sample the policy's answers (false: greedy, the policy's best guess).")

    def sampling(self) -> dict[str, Any]:
        """The :class:`~promptloop_agents.policies.mllm.MLLMAgent` settings this config fixes."""
        keys = ("temperature", "top_k", "top_p", "max_new_tokens", "mode")
        settings = {key: getattr(self, key) for key in keys}
        return {**settings, "image_size": self.image_size} if self.image_size else settings


@dataclass
class GRPOConfig:
    """GRPO hyper-parameters (named as TRL's ``GRPOConfig`` names them), memory savers and run bookkeeping."""

    _argument_group_name = "GRPO"

    output_dir: str = _opt("runs/promptloop", "Run folder: config, metrics log, checkpoints, policy, pictures.")
    train_prompts: str = _opt("toy-user-train", "Training queries: a built-in set name or a text file (one per line).")
    max_steps: int = _opt(100, "GRPO iterations (each: rollouts of all groups, then the policy updates); 0 = none.")
    queries_per_iteration: int = _opt(8, "Queries per iteration and process; each gets a group of episodes.")
    group_size: int = _opt(4, "G: episodes per query, differing in sampled prompts (and in noise unless same_noise).")
    same_noise: bool = _opt(False, "A group shares its starting noise and refinement schedule (one env seed).")
    query_cycle: int = _opt(
        0,
        "Play the (query, seed) groups of a fixed cycle of this many iterations: iteration i replays the groups of"
        " iteration i mod N (same queries and noise; the sampled prompts differ), so iterations N apart are paired"
        " and the training curve compares like with like (0 = fresh groups every iteration). A way to measure,"
        " not to train: a policy fits the few replayed groups (on toy-compose 60 groups x 8 epochs lost 0.056"
        " held-out strict).",
    )
    learning_rate: float = _opt(1e-3, "AdamW learning rate (peak, after warm-up).")
    lr_scheduler_type: str = _opt(
        "constant", "transformers scheduler: constant | linear | cosine | constant_with_warmup | ..."
    )
    warmup_ratio: float = _opt(0.0, "Fraction of all optimiser steps spent warming the learning rate up from 0.")
    weight_decay: float = _opt(0.0, "AdamW weight decay.")
    beta: float = _opt(0.04, "KL coefficient to the frozen reference; 0 turns it off (and needs no reference).")
    epsilon: float = _opt(0.2, "Lower clip range of the importance ratio (1 - epsilon).")
    epsilon_high: float | None = _opt(None, "Upper clip range (1 + epsilon_high); default: epsilon. DAPO: 0.28.")
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = _opt(
        "dapo",
        "grpo: mean over each action's tokens, then over actions; dr_grpo: token sum / (actions x max_new_tokens);"
        " dapo: token sum / all generated tokens of the iteration.",
    )
    scale_rewards: Literal["group", "batch", "none"] = _opt(
        "group", "Divide advantages by the std of the group, of the whole batch, or not at all (Dr. GRPO)."
    )
    filter_zero_std_groups: bool = _opt(False, "Leave groups whose rewards are all equal out of the update.")
    num_iterations: int = _opt(1, "PPO epochs over each batch of rollouts (TRL's mu; 1 = on-policy, ratio 1).")
    steps_per_generation: int = _opt(
        1, "Optimiser steps per epoch: the actions are shuffled into this many minibatches."
    )
    micro_batch_size: int = _opt(8, "Actions per forward/backward in the update (gradient accumulation); 0 = all.")
    max_grad_norm: float = _opt(1.0, "Gradient-norm clip.")
    malformed_penalty: float = _opt(0.0, "Subtracted from an episode's reward per malformed answer (format penalty).")
    truncation_penalty: float = _opt(
        0.0, "Subtracted from an episode's reward per prompt the text encoder truncated (info['prompt_truncated'])."
    )
    finetuning: Literal["lora", "full"] = _opt("lora", "lora (adapters; reference = adapters off) | full.")
    lora_r: int = _opt(16, "LoRA rank.")
    lora_alpha: int = _opt(32, "LoRA alpha.")
    gradient_checkpointing: bool = _opt(False, "Recompute activations in the backward pass (less memory).")
    refine_schedule: str = _opt(
        "random", "Refinement points in training: random (paper) | uniform | step indices like '0,9,11,13,15'."
    )
    max_train_seconds: float = _opt(0.0, "Stop after the iteration that passes this wall time (0 = no limit).")
    seed: int = _opt(0, "Seed of queries, env seeds and sampling (each iteration is re-seeded from it).")
    save_every: int = _opt(10, "Checkpoint every this many iterations (and at the end).")
    keep_checkpoints: int = _opt(2, "Checkpoints to keep.")
    resume: bool = _opt(True, "Resume from the newest checkpoint in output_dir/checkpoints if there is one.")
    allow_config_change: bool = _opt(False, "Resume even if the run's saved config differs from this one.")
    report_to: str = _opt("", "accelerate trackers, comma-separated: tensorboard, wandb, trackio, all ('' = none).")
    log_samples_every: int = _opt(0, "Every N iterations write (and track) sampled prompts with their previews.")
    eval_every: int = _opt(0, "Every N iterations score the policy on held-out queries with eval_metrics (0 = off).")
    eval_prompts: str = _opt("toy-user-test", "Held-out queries of the periodic evaluation.")
    eval_metrics: str = _opt("toy-fidelity,toy-aesthetic", "Rewards of the periodic evaluation (over-optimisation).")
    eval_queries: int = _opt(16, "Held-out queries per periodic evaluation (one episode each).")
    progress: bool = _opt(True, "Show progress bars.")

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 for group-normalised advantages; got {self.group_size}.")
        for name, low in (("num_iterations", 1), ("steps_per_generation", 1), ("max_steps", 0), ("query_cycle", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}; got {getattr(self, name)}.")
        if self.finetuning not in ("lora", "full"):
            raise ValueError(f"finetuning must be 'lora' or 'full'; got {self.finetuning!r}.")


@dataclass
class EvalConfig:
    """Evaluation on held-out queries: agents, episodes, metrics and outputs of ``promptloop eval``."""

    _argument_group_name = "evaluation"

    output_dir: str = _opt("runs/eval", "Folder for eval.json, eval.md, samples_<backbone>.png and metrics.json.")
    device: str = _opt("auto", "Device of the backbone and the policy: auto (cuda when available) | cpu | cuda:N.")
    eval_prompts: str = _opt("toy-user-test", "Held-out queries: a built-in set name or a text file.")
    seeds_per_query: int = _opt(2, "Episodes (noise seeds) per held-out query, the same for every agent.")
    max_queries: int = _opt(0, "Use at most this many queries (0 = all).")
    metrics: str = _opt("toy-fidelity,toy-aesthetic", "Comma-separated rewards scored on the final images.")
    agents: str = _opt(
        "identity,static,policy",
        "Comma-separated agents, each [name=]spec: identity, static, random; on toy-compose caption, best-static, "
        "oracle, oracle:best-static; a policy folder PATH (closed loop), PATH:a-priori (no images) or PATH:blank "
        "(closed loop on blank previews); policy[:mode] = the --policy path.",
    )
    baseline: str = _opt("identity", "Agent the paired differences of the table are taken to (default: the first).")
    refine_schedule: str = _opt("uniform", "Refinement points: uniform | random | step indices like '0,9,11,13,15'.")
    static_template: str = _opt(
        "", "Static rewrite template with {query} (default: the query with generic quality modifiers)."
    )
    static_policy: str = _opt(
        "", "Policy folder whose one greedy a-priori rewrite of the query is the static rewrite."
    )
    select_seeds: int = _opt(4, "best-static: seeds per candidate rewrite in the selection (apart from test seeds).")
    blank_value: int = _opt(128, "Pixel value of the constant previews of PATH:blank agents (128: mid-grey).")
    sample_queries: int = _opt(8, "Columns (queries, first seed) of the sample grids; 0 = no grid.")
    seed: int = _opt(1234, "Evaluation seed: the episodes' env seeds derive from it and the query and seed index.")
    num_envs: int = _opt(32, "Episodes stepped together.")
    progress: bool = _opt(True, "Show a progress bar.")

    def resolved_device(self) -> str:
        """``device`` with ``auto`` resolved."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


SECTIONS: dict[str, type] = {"env": EnvConfig, "policy": PolicyConfig, "grpo": GRPOConfig, "eval": EvalConfig}
COMMAND_SECTIONS = {"train": ("env", "policy", "grpo"), "eval": ("env", "policy", "eval")}
# Fields that may change when a run resumes (bookkeeping, not the experiment).
RESUMABLE_FIELDS = {"max_steps", "max_train_seconds", "save_every", "keep_checkpoints", "resume"}
RESUMABLE_FIELDS |= {"allow_config_change", "progress", "report_to", "log_samples_every", "output_dir"}


def config_from_args(config_class: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``config_class`` from parsed arguments (fields it does not have are ignored)."""
    names = [f.name for f in dataclasses.fields(config_class) if f.init]
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return config_class(**{**values, **overrides})


def read_config_file(path: str | Path, sections: tuple[str, ...]) -> dict[str, Any]:
    """Flat ``{field: value}`` of the given sections of a YAML (or JSON) config with ``env:`` / ``policy:`` /
    ``grpo:`` / ``eval:`` sections (other sections are skipped, so ``eval`` reads a training config).

    Raises:
        ValueError: an unknown section or field (named in the message).
    """
    from promptloop_env.cli import config_values
    from promptloop_env.cli import read_config_file as read_mapping

    try:
        return config_values(read_mapping(path), [SECTIONS[s] for s in sections], sections=SECTIONS)
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

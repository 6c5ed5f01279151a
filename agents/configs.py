"""Run configurations. Each field carries its help text once; the CLI builds its options from them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


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


@dataclass
class EnvConfig:
    """Which env the agents talk to (all passed to ``gym.make("PromptLoop-v0", ...)``)."""

    backbone: str = _opt("toy-shapes", "Diffusion backbone: registry name, hub id or local pipeline folder.")
    reward: str = _opt(
        "toy-fidelity", "Training reward: a registry name, or weighted names 'toy-fidelity:1,toy-aesthetic:0.5'."
    )
    num_inference_steps: int = _opt(20, "Denoising steps per episode.")
    num_refinements: int = _opt(5, "N_R: how many prompts the agent writes per episode.")
    guidance_scale: float | None = _opt(None, "Classifier-free guidance scale; default: the backbone's.")
    preview: str = _opt("vae", "Preview decoder shown to the policy: vae | taesd | latent_rgb | none.")
    preview_size: int = _opt(64, "Side in pixels of the preview images.")
    vectorize: bool = _opt(True, "Use the batched vector env (one model call per step for all episodes).")

    def env_kwargs(self, refine_schedule: str) -> dict[str, Any]:
        """Keyword arguments for ``gym.make`` / :func:`promptloop_agents.rollout.make_env_batch`."""
        kwargs = {"backbone": self.backbone, "reward": parse_reward(self.reward)}
        kwargs["num_inference_steps"] = self.num_inference_steps
        kwargs.update(num_refinements=self.num_refinements, guidance_scale=self.guidance_scale, preview=self.preview)
        return {**kwargs, "preview_size": self.preview_size, "refine_schedule": refine_schedule}


@dataclass
class PolicyConfig:
    """Which policy to train or evaluate, and how it samples."""

    policy: str = _opt("toy", "'toy' (build the toy-world policy and warm-start it), a policy folder or a hub id.")
    toy_size: str = _opt("small", "Toy policy size: tiny | small.")
    warm_start_episodes: int = _opt(64, "Toy warm start: env episodes rolled out with the rewrite teacher.")
    warm_start_text_examples: int = _opt(4, "Toy warm start: preview-free examples per training query.")
    warm_start_steps: int = _opt(600, "Toy warm start: supervised steps (batch 32).")
    warm_start_lr: float = _opt(2e-3, "Toy warm start: learning rate.")
    warm_start_from: str = _opt(
        "", "Toy policy: start from this warm-started policy folder ('shipped' = the one in the package) if it exists."
    )
    temperature: float = _opt(1.0, "Sampling temperature of the policy (training and evaluation).")
    max_new_tokens: int = _opt(24, "Longest answer the policy may write, in tokens.")
    mode: str = _opt("closed-loop", "closed-loop (preview at every refinement) | a-priori (no images).")


@dataclass
class GRPOConfig:
    """GRPO hyper-parameters and run bookkeeping."""

    output_dir: str = _opt("runs/promptloop", "Run folder: config, metrics log, checkpoints, policy, pictures.")
    train_prompts: str = _opt("toy-user-train", "Training queries: a built-in set name or a text file (one per line).")
    num_iterations: int = _opt(100, "GRPO iterations (each: rollouts of all groups, then one update).")
    queries_per_iteration: int = _opt(8, "Queries per iteration and process; each gets a group of episodes.")
    group_size: int = _opt(4, "G: episodes per query, differing in seed and sampled prompts.")
    learning_rate: float = _opt(1e-3, "AdamW learning rate of the LoRA adapters.")
    beta: float = _opt(0.04, "KL coefficient to the frozen reference (adapters disabled); 0 turns it off.")
    clip_epsilon: float = _opt(0.2, "PPO clip range of the importance ratio.")
    malformed_penalty: float = _opt(0.0, "Subtracted from an episode's reward per malformed answer (format penalty).")
    num_epochs: int = _opt(1, "Updates per batch of rollouts (1 = fully on-policy, ratio exactly 1).")
    max_grad_norm: float = _opt(1.0, "Gradient-norm clip.")
    micro_batch_size: int = _opt(0, "Actions per forward in the update; 0 = all actions of one decision point.")
    lora_r: int = _opt(16, "LoRA rank.")
    lora_alpha: int = _opt(32, "LoRA alpha.")
    refine_schedule: str = _opt("random", "Refinement points in training: random (paper) | uniform.")
    max_train_seconds: float = _opt(0.0, "Stop after the iteration that passes this wall time (0 = no limit).")
    seed: int = _opt(0, "Seed of queries, env seeds and sampling (each iteration is re-seeded from it).")
    save_every: int = _opt(10, "Checkpoint every this many iterations (and at the end).")
    keep_checkpoints: int = _opt(2, "Checkpoints to keep.")
    resume: bool = _opt(True, "Resume from the newest checkpoint in output_dir/checkpoints if there is one.")
    progress: bool = _opt(True, "Show progress bars.")


@dataclass
class EvalConfig:
    """Evaluation on held-out queries."""

    output_dir: str = _opt("runs/eval", "Folder for metrics.json and pictures.")
    eval_prompts: str = _opt("toy-user-test", "Held-out queries: a built-in set name or a text file.")
    seeds_per_query: int = _opt(2, "Episodes (seeds) per held-out query.")
    max_queries: int = _opt(0, "Use at most this many queries (0 = all).")
    metrics: str = _opt("toy-fidelity,toy-aesthetic", "Comma-separated rewards scored on the final images.")
    agents: str = _opt(
        "identity,static,policy", "Comma-separated agents: identity, static, random, policy, policy-a-priori."
    )
    static_template: str = _opt("", "Static rewrite template with {query} (used when no --static-policy is given).")
    static_policy: str = _opt(
        "", "Policy folder whose one greedy a-priori rewrite of the query is the static rewrite."
    )
    seed: int = _opt(1234, "Evaluation seed (same env seeds for every agent).")
    num_envs: int = _opt(32, "Episodes stepped together.")
    progress: bool = _opt(True, "Show progress bars.")


def _base_type(annotation: Any) -> type:
    if isinstance(annotation, str):  # postponed annotations: only builtins and "| None" are used here
        annotation = eval(annotation, {"float": float, "int": int, "str": str, "bool": bool, "None": None})  # noqa: S307
    if isinstance(annotation, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type, title: str) -> None:
    """Add one ``--option`` per field of ``config_class`` (help text and default from the field)."""
    group = parser.add_argument_group(title, config_class.__doc__)
    for f in dataclasses.fields(config_class):
        kind = _base_type(f.type)
        option = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        if kind is bool:
            group.add_argument(option, type=_parse_bool, default=default, metavar="BOOL", help=help_text)
        else:
            group.add_argument(option, type=kind, default=default, help=help_text)


def config_from_args(config_class: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``config_class`` from parsed arguments (fields it does not have are ignored)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if hasattr(args, f.name)}
    return config_class(**{**values, **overrides})


def save_configs(path: str | Path, **configs: Any) -> None:
    """Write configs as one JSON file ``{name: {field: value}}``."""
    payload = {name: dataclasses.asdict(config) for name, config in configs.items()}
    Path(path).write_text(json.dumps(payload, indent=2))

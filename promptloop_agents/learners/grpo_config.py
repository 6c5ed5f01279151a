"""The ``grpo`` section of a run: :class:`GRPOConfig`, beside its trainer (:mod:`.grpo_trainer`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from promptloop_agents.configs import config_field


@dataclass
class GRPOConfig:
    """GRPO hyper-parameters (named, and meaning, as TRL's ``GRPOConfig`` fields of the same name), memory savers
    and run bookkeeping. ``docs/training-on-gpus.md`` lists every field against TRL's and each difference."""

    _argument_group_name = "GRPO"

    output_dir: str = config_field(
        "runs/promptloop", "Run folder: config, metrics log, checkpoints, policy, pictures."
    )
    train_prompts: str = config_field(
        "toy-user-train", "Training queries: a built-in set name or a text file (one per line)."
    )
    max_steps: int = config_field(
        100, "GRPO iterations (each: rollouts of all groups, then the policy updates); 0 = none."
    )
    queries_per_iteration: int = config_field(8, "Queries per iteration and process; each gets a group of episodes.")
    group_size: int = config_field(
        4, "G: episodes per query, differing in sampled prompts (and in noise unless same_noise)."
    )
    same_noise: bool = config_field(False, "A group shares its starting noise and refinement schedule (one env seed).")
    query_cycle: int = config_field(
        0,
        "Play the (query, seed) groups of a fixed cycle of this many iterations: iteration i replays the groups of"
        " iteration i mod N (same queries and noise; the sampled prompts differ), so iterations N apart are paired"
        " and the training curve compares like with like (0 = fresh groups every iteration). A way to measure,"
        " not to train: a policy fits the few replayed groups (on toy-compose 60 groups x 8 epochs lost 0.056"
        " held-out strict).",
    )
    learning_rate: float = config_field(1e-3, "AdamW learning rate (peak, after warm-up).")
    lr_scheduler_type: str = config_field(
        "constant", "transformers scheduler: constant | linear | cosine | constant_with_warmup | ..."
    )
    warmup_ratio: float = config_field(
        0.0, "Fraction of all optimiser steps spent warming the learning rate up from 0."
    )
    weight_decay: float = config_field(0.0, "AdamW weight decay.")
    beta: float = config_field(
        0.0,
        "KL coefficient to the frozen reference; 0 (TRL's default) turns it off and needs no reference. The GPU "
        "recipes set 0.04 (DeepSeekMath's value, TRL's former default).",
    )
    use_bias_correction_kl: bool = config_field(
        False,
        "Weight the KL term by the importance ratio, as TRL does by default (True there); False keeps the plain k3"
        " term of the DeepSeekMath objective, as this project's runs were trained.",
    )
    epsilon: float = config_field(0.2, "Lower clip range of the importance ratio (1 - epsilon).")
    epsilon_high: float | None = config_field(
        None, "Upper clip range (1 + epsilon_high); default: epsilon. DAPO: 0.28."
    )
    delta: float | None = config_field(
        None, "Two-sided clipping: also cap the unclipped ratio at delta (> 1 + epsilon_high; None = off)."
    )
    importance_sampling_level: Literal["token", "sequence"] = config_field(
        "token", "token: one importance ratio per token; sequence (GSPO): one per action, from its mean log-ratio."
    )
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = config_field(
        "dapo",
        "grpo: mean over each action's tokens, then over actions; dr_grpo: token sum / (actions x max_new_tokens);"
        " dapo: token sum / active tokens. Actions and tokens are counted over the optimiser step on all ranks.",
    )
    scale_rewards: Literal["group", "batch", "none"] = config_field(
        "group",
        "Divide advantages by the std of the group, of the whole batch gathered from all ranks, or not at all"
        " (Dr. GRPO).",
    )
    filter_zero_std_groups: bool = config_field(False, "Leave groups whose rewards are all equal out of the update.")
    mask_truncated_completions: bool = config_field(
        False, "Leave answers cut at max_new_tokens (no end-of-answer token) out of the loss, as TRL does."
    )
    num_iterations: int = config_field(1, "PPO epochs over each batch of rollouts (TRL's mu; 1 = on-policy, ratio 1).")
    num_minibatches: int = config_field(
        1,
        "Optimiser steps per epoch: the iteration's actions are shuffled into this many minibatches (CleanRL's"
        " name; TRL's steps_per_generation / gradient_accumulation_steps, which count micro-batches).",
    )
    micro_batch_size: int = config_field(
        8, "Actions per forward/backward in the update (gradient accumulation); 0 = all."
    )
    max_grad_norm: float = config_field(1.0, "Gradient-norm clip.")
    malformed_penalty: float = config_field(
        0.0, "Subtracted from an episode's reward per malformed answer (format penalty)."
    )
    truncation_penalty: float = config_field(
        0.0, "Subtracted from an episode's reward per prompt the text encoder truncated (info['prompt_truncated'])."
    )
    finetuning: Literal["lora", "full"] = config_field("lora", "lora (adapters; reference = adapters off) | full.")
    lora_r: int = config_field(16, "LoRA rank.")
    lora_alpha: int = config_field(32, "LoRA alpha.")
    gradient_checkpointing: bool = config_field(False, "Recompute activations in the backward pass (less memory).")
    refine_schedule: str = config_field(
        "random", "Refinement points in training: random (paper) | uniform | step indices like '0,9,11,13,15'."
    )
    max_train_seconds: float = config_field(0.0, "Stop after the iteration that passes this wall time (0 = no limit).")
    seed: int = config_field(0, "Seed of queries, env seeds and sampling (each iteration is re-seeded from it).")
    save_every: int = config_field(10, "Checkpoint every this many iterations (and at the end).")
    keep_checkpoints: int = config_field(2, "Checkpoints to keep.")
    resume: bool = config_field(True, "Resume from the newest checkpoint in output_dir/checkpoints if there is one.")
    allow_config_change: bool = config_field(False, "Resume even if the run's saved config differs from this one.")
    report_to: str = config_field(
        "", "accelerate trackers, comma-separated: tensorboard, wandb, trackio, all ('' = none)."
    )
    log_samples_every: int = config_field(
        0, "Every N iterations write (and track) sampled prompts with their previews."
    )
    eval_every: int = config_field(
        0, "Every N iterations score the policy on held-out queries with eval_metrics (0 = off)."
    )
    eval_prompts: str = config_field("toy-user-test", "Held-out queries of the periodic evaluation.")
    eval_metrics: str = config_field(
        "toy-fidelity,toy-aesthetic", "Rewards of the periodic evaluation (over-optimisation)."
    )
    eval_queries: int = config_field(16, "Held-out queries per periodic evaluation (one episode each).")
    progress: bool = config_field(True, "Show progress bars.")

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 for group-normalised advantages; got {self.group_size}.")
        for name, low in (("num_iterations", 1), ("num_minibatches", 1), ("max_steps", 0), ("query_cycle", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}; got {getattr(self, name)}.")
        if self.finetuning not in ("lora", "full"):
            raise ValueError(f"finetuning must be 'lora' or 'full'; got {self.finetuning!r}.")
        if self.importance_sampling_level not in ("token", "sequence"):
            raise ValueError(
                f"importance_sampling_level must be 'token' or 'sequence'; got {self.importance_sampling_level!r}."
            )
        high = self.epsilon if self.epsilon_high is None else self.epsilon_high
        if self.delta is not None and self.delta <= 1 + high:
            raise ValueError(f"delta must exceed 1 + epsilon_high = {1 + high}; got {self.delta}.")

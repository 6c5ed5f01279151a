"""The GRPO objective as plain functions: group advantages and the clipped, KL-penalised, normalised loss.

Names follow TRL's ``GRPOConfig``: ``scale_rewards`` (group | batch | none), ``epsilon`` / ``epsilon_high``
(clip-higher), ``delta`` (two-sided clipping), ``importance_sampling_level`` (token | sequence, GSPO), ``beta``
(k3 KL to the reference) and ``loss_type`` (grpo | dr_grpo | dapo). In PromptLoop an *action* is one generated
prompt; an episode has ``num_refinements`` of them, all sharing its advantage.

Multi-process runs normalise over the whole optimiser step of every rank (global counts, as TRL's ``dapo`` does
with ``num_items_in_batch``), so that N ranks holding 1/N of the groups each compute the same update as one rank
holding them all: see :func:`reduce_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


def group_advantages(rewards: np.ndarray, group_size: int, scale_rewards: str = "group", eps: float = 1e-4):
    """Rewards minus their group's mean, divided by the group's (or the batch's, or no) standard deviation.

    Groups are consecutive runs of ``group_size`` episodes. The std is the sample std (``ddof=1``), as TRL's.

    >>> group_advantages(np.array([1.0, 3.0, 5.0, 5.0]), 2).round(3).tolist()
    [-0.707, 0.707, 0.0, 0.0]
    >>> group_advantages(np.array([1.0, 3.0, 5.0, 5.0]), 2, scale_rewards="none").tolist()
    [-1.0, 1.0, 0.0, 0.0]
    """
    groups = rewards.reshape(-1, group_size)
    centred = groups - groups.mean(axis=1, keepdims=True)
    if scale_rewards == "group":
        std = groups.std(axis=1, ddof=1, keepdims=True)
    elif scale_rewards == "batch":
        std = np.full((len(groups), 1), rewards.std(ddof=1) if rewards.size > 1 else 0.0)
    elif scale_rewards == "none":
        return centred.reshape(-1)
    else:
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none'; got {scale_rewards!r}.")
    return (centred / (std + eps)).reshape(-1)


def zero_std_groups(rewards: np.ndarray, group_size: int) -> np.ndarray:
    """Per episode: whether its group's rewards are all equal (its advantages are 0, it carries no signal).

    >>> zero_std_groups(np.array([1.0, 1.0, 0.0, 2.0]), 2).tolist()
    [True, True, False, False]
    """
    groups = rewards.reshape(-1, group_size)
    flat = np.ptp(groups, axis=1) == 0
    return np.repeat(flat, group_size)


@dataclass
class LossTerms:
    """Per-token pieces of the loss of one forward, for the loss and for logging."""

    per_token: torch.Tensor
    ratio: torch.Tensor
    low_clipped: torch.Tensor
    high_clipped: torch.Tensor
    kl: torch.Tensor | None


def clipped_objective(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon: float,
    epsilon_high: float | None = None,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    *,
    mask: torch.Tensor | None = None,
    importance_sampling_level: str = "token",
    delta: float | None = None,
    use_bias_correction_kl: bool = False,
) -> LossTerms:
    """PPO/GRPO clipped surrogate per token, ``-min(r A, clip(r, 1 - eps, 1 + eps_high) A)``, plus ``beta`` k3 KL.

    Args:
        logps, old_logps: ``[B, L]`` log-probabilities under the current and the sampling-time policy.
        advantages: ``[B]``, one per action.
        epsilon, epsilon_high: clip range below and above 1 (``epsilon_high`` defaults to ``epsilon``).
        ref_logps: ``[B, L]`` under the reference; with ``beta > 0`` the k3 estimate of KL is added.
        mask: ``[B, L]`` 1 on completion tokens; needed by ``importance_sampling_level="sequence"``.
        importance_sampling_level: ``"token"`` (one ratio per token) or ``"sequence"`` (GSPO: one ratio per action,
            the exponentiated mean of its tokens' log-ratios), as TRL's option of that name.
        delta: when set, the unclipped ratio is also capped at ``delta`` (TRL's two-sided clipping).
        use_bias_correction_kl: multiply the KL term by the importance ratio (TRL's option of that name), which
            corrects the estimate for samples drawn from the old policy; it also changes the KL's gradient.
    """
    high = epsilon if epsilon_high is None else epsilon_high
    log_ratio = logps - old_logps
    if importance_sampling_level == "sequence":
        if mask is None:
            raise ValueError("importance_sampling_level='sequence' needs the completion mask.")
        weights = mask.to(log_ratio.dtype)
        log_ratio = ((log_ratio * weights).sum(-1) / weights.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    elif importance_sampling_level != "token":
        raise ValueError(
            f"importance_sampling_level must be one of {IMPORTANCE_SAMPLING_LEVELS}; "
            f"got {importance_sampling_level!r}."
        )
    ratio = torch.exp(log_ratio)
    adv = advantages[:, None]
    clipped = ratio.clamp(1 - epsilon, 1 + high)
    unclipped = ratio if delta is None else ratio.clamp(max=delta)
    per_token = (-torch.min(unclipped * adv, clipped * adv)).expand_as(logps)
    kl = None
    if ref_logps is not None and beta > 0:
        diff = ref_logps - logps
        kl = torch.exp(diff) - diff - 1
        per_token = per_token + beta * (kl * ratio if use_bias_correction_kl else kl)
    low_clipped = ((ratio < 1 - epsilon) & (adv < 0)).expand_as(logps)
    high_clipped = ((ratio > 1 + high) & (adv > 0)).expand_as(logps)
    return LossTerms(per_token, ratio.expand_as(logps), low_clipped, high_clipped, kl)


def reduce_loss(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    num_actions: float,
    num_tokens: float,
    max_new_tokens: int,
    world_size: int = 1,
) -> torch.Tensor:
    """One micro-batch's share of an optimiser step's loss, normalised over the whole step of every rank.

    ``grpo``: each action's token mean, summed, over ``num_actions``; ``dr_grpo``: the token sum over
    ``num_actions * max_new_tokens`` (no length bias); ``dapo``: the token sum over ``num_tokens`` (the active
    tokens). ``num_actions`` and ``num_tokens`` count the optimiser step on ALL ranks, and the result is multiplied
    by ``world_size`` because DDP, FSDP and DeepSpeed average the ranks' gradients: summed over micro-batches and
    averaged over ranks, the shares give the loss of the whole step, whatever the split.

    >>> per_token, mask = torch.ones(1, 4), torch.tensor([[1, 1, 0, 0]])
    >>> reduce_loss(per_token, mask, "dapo", num_actions=2, num_tokens=6.0, max_new_tokens=4, world_size=2).item()
    0.6666666865348816
    """
    mask = mask.to(per_token.dtype)
    if loss_type == "grpo":
        local = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / max(num_actions, 1.0)
    elif loss_type == "dr_grpo":
        local = (per_token * mask).sum() / max(num_actions * max_new_tokens, 1.0)
    elif loss_type == "dapo":
        local = (per_token * mask).sum() / max(num_tokens, 1.0)
    else:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}; got {loss_type!r}.")
    return local * world_size

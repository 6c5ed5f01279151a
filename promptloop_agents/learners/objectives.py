"""The GRPO objective as plain functions: group advantages and the clipped, KL-penalised, normalised loss.

Names follow TRL's ``GRPOConfig``: ``scale_rewards`` (group | batch | none), ``epsilon`` / ``epsilon_high``
(clip-higher), ``beta`` (k3 KL to the reference) and ``loss_type`` (grpo | dr_grpo | dapo). In PromptLoop an
*action* is one generated prompt; an episode has ``num_refinements`` of them, all sharing its advantage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")


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
) -> LossTerms:
    """PPO/GRPO clipped surrogate per token, ``-min(r A, clip(r, 1 - eps, 1 + eps_high) A)``, plus ``beta`` k3 KL.

    Args:
        logps, old_logps: ``[B, L]`` log-probabilities under the current and the sampling-time policy.
        advantages: ``[B]``, one per action.
        epsilon, epsilon_high: clip range below and above 1 (``epsilon_high`` defaults to ``epsilon``).
        ref_logps: ``[B, L]`` under the reference; with ``beta > 0`` the k3 estimate of KL is added.
    """
    high = epsilon if epsilon_high is None else epsilon_high
    ratio = torch.exp(logps - old_logps)
    adv = advantages[:, None]
    clipped = ratio.clamp(1 - epsilon, 1 + high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if ref_logps is not None and beta > 0:
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
    low_clipped = (ratio < 1 - epsilon) & (adv < 0)
    high_clipped = (ratio > 1 + high) & (adv > 0)
    return LossTerms(per_token, ratio, low_clipped, high_clipped, kl)


def reduce_loss(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    num_actions: int,
    num_tokens: float,
    max_new_tokens: int,
) -> torch.Tensor:
    """One micro-batch's share of an optimiser step's loss, normalised over the whole step (minibatch).

    ``grpo``: each action's token mean, summed, over ``num_actions``; ``dr_grpo``: the token sum over
    ``num_actions * max_new_tokens`` (no length bias); ``dapo``: the token sum over ``num_tokens``.
    Summing the results of all micro-batches of a step gives the step's loss.
    """
    mask = mask.float()
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / num_actions
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (num_actions * max_new_tokens)
    if loss_type == "dapo":
        return (per_token * mask).sum() / max(num_tokens, 1.0)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}; got {loss_type!r}.")

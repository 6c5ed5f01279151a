"""The GRPO update of :class:`~promptloop_agents.learners.grpo_trainer.GRPOTrainer`: minibatches of
micro-batches, the clipped objective normalised over the optimiser step on every rank, the optimiser steps.

Normalisers count the step's actions and active tokens on all ranks (one all-reduce per update) and each rank's
share is scaled by the world size, since the engines average gradients: N ranks holding 1/N of the groups each
make the update one rank holding all of them would (``tests/agents/test_distributed_equivalence.py``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from promptloop_agents.learners.distributed import engine
from promptloop_agents.learners.objectives import clipped_objective, reduce_loss


@dataclass
class MicroBatch:
    """Actions of one forward pass in the update, with their advantages and cached reference / old log-probs."""

    batch: Any
    advantages: torch.Tensor
    num_actions: int = 0  # rows that count in the normalisation (not filtered out)
    ref_logps: torch.Tensor | None = None
    old_logps: torch.Tensor | None = None


class GRPOUpdate:
    """The update half of the GRPO trainer (a mixin): expects its ``config``, ``policy``, ``model``, ``optimizer``,
    ``scheduler``, ``accelerator``, ``reference`` and ``envs`` and its ``_episode_rows``."""

    def _micro_batches(
        self, samples: list[Any], advantages: np.ndarray, keep: np.ndarray | None, rng: np.random.Generator
    ) -> list[list[MicroBatch]]:
        """The iteration's actions, shuffled once, as minibatches (optimiser steps) of micro-batches (forwards).

        Each micro-batch's inputs and reference / old log-probabilities are computed here, once, and reused by
        every epoch, so the first step's ratio is exactly 1. Filtered groups and (with
        ``mask_truncated_completions``) truncated answers stay in the batch with their tokens masked, so that
        every rank runs the same forwards (sharded engines gather layers in lockstep).
        """
        config = self.config
        actions = [
            (sample, row, int(episode))
            for sample, episodes in zip(samples, self._episode_rows(samples, len(advantages)), strict=True)
            for row, episode in enumerate(episodes)
        ]
        if config.num_minibatches > 1:
            actions = [actions[i] for i in rng.permutation(len(actions))]
        need_old = config.num_iterations > 1 or config.num_minibatches > 1
        minibatches = []
        for chunk in np.array_split(np.arange(len(actions)), config.num_minibatches):
            size = config.micro_batch_size or max(len(chunk), 1)
            micro = []
            for start in range(0, len(chunk), size):
                rows = [actions[i] for i in chunk[start : start + size]]
                batch = self.policy.collate([(sample, row) for sample, row, _ in rows])
                counted = torch.tensor([keep is None or bool(keep[e]) for _, _, e in rows])
                weight = counted.clone()
                if config.mask_truncated_completions:
                    weight &= torch.tensor([not self._truncated(sample.completions[row]) for sample, row, _ in rows])
                batch.completion_mask = batch.completion_mask * weight[:, None].to(batch.completion_mask)
                adv = torch.tensor([advantages[e] for _, _, e in rows], dtype=torch.float32)
                item = MicroBatch(batch, adv.to(self.accelerator.device), num_actions=int(counted.sum()))
                with torch.no_grad():
                    if config.beta > 0:
                        item.ref_logps = self._reference_logps(batch)
                    if need_old:
                        item.old_logps = self.policy.logps(self.model, batch)
                micro.append(item)
            if micro:
                minibatches.append(micro)
        return minibatches

    def _truncated(self, completion: torch.Tensor) -> bool:
        """Whether an answer was cut at ``max_new_tokens`` (it does not end with an end-of-answer token)."""
        return not len(completion) or int(completion[-1]) not in self.policy.eos_token_ids

    def _reference_logps(self, batch: Any) -> torch.Tensor:
        if self.reference is not None:
            return self.policy.logps(self.reference, batch)
        with self.accelerator.unwrap_model(self.model).disable_adapter():
            return self.policy.logps(self.model, batch)

    def update(
        self, samples: list[Any], advantages: np.ndarray, keep: np.ndarray | None, rng: np.random.Generator
    ) -> dict[str, float]:
        """``num_iterations`` epochs of ``num_minibatches`` clipped-ratio optimiser steps; returns diagnostics.

        Every optimiser step is normalised by its actions and active tokens counted on all ranks (one all-reduce
        per update), and the diagnostics are reduced over ranks, so they describe the whole step.
        """
        config = self.config
        accelerator = self.accelerator
        minibatches = self._micro_batches(samples, advantages, keep, rng)
        max_new_tokens = int(getattr(self.policy, "max_new_tokens", 1))
        world = accelerator.num_processes
        local_counts = torch.tensor(
            [
                [sum(m.num_actions for m in micro), sum(float(m.batch.completion_mask.sum()) for m in micro)]
                for micro in minibatches
            ],
            dtype=torch.float64,
            device=accelerator.device,
        )
        counts_per_step = (accelerator.reduce(local_counts, "sum") if world > 1 else local_counts).tolist()
        names = ("loss", "kl", "entropy", "clip_low", "clip_high", "tokens", "first_tokens")
        sums = dict.fromkeys(names, 0.0)
        grad_norm, steps, ratio_max_dev = 0.0, 0, 0.0
        # DeepSpeed divides each backward by its gradient_accumulation_steps and steps at that boundary itself.
        accumulation = accelerator.gradient_accumulation_steps if engine(accelerator) == "deepspeed" else 0
        self.model.train()
        for epoch in range(config.num_iterations):
            for step_index, micro in enumerate(minibatches):
                num_actions, num_tokens = counts_per_step[step_index]
                if num_actions == 0:  # every group of this step filtered out, on every rank: no step at all
                    continue
                if accumulation and len(micro) != accumulation:
                    raise ValueError(
                        f"DeepSpeed's gradient_accumulation_steps={accumulation} must equal the micro-batches per "
                        f"optimiser step ({len(micro)}); set it in the accelerate config (recipes/accelerate)."
                    )
                self.optimizer.zero_grad(set_to_none=True)
                for index, item in enumerate(micro):
                    last = index == len(micro) - 1
                    sync = contextlib.nullcontext() if last else accelerator.no_sync(self.model)
                    with sync:
                        if epoch == 0:
                            logps, entropy = self.policy.logps(self.model, item.batch, with_entropy=True)
                        else:
                            logps = self.policy.logps(self.model, item.batch)
                        old = logps.detach() if item.old_logps is None else item.old_logps
                        mask = item.batch.completion_mask
                        terms = clipped_objective(
                            logps,
                            old,
                            item.advantages,
                            config.epsilon,
                            config.epsilon_high,
                            item.ref_logps,
                            config.beta,
                            mask=mask,
                            importance_sampling_level=config.importance_sampling_level,
                            delta=config.delta,
                            use_bias_correction_kl=config.use_bias_correction_kl,
                        )
                        loss = reduce_loss(
                            terms.per_token, mask, config.loss_type, num_actions, num_tokens, max_new_tokens, world
                        )
                        accelerator.backward(loss * accumulation if accumulation else loss)
                    with torch.no_grad():
                        m = mask.bool()
                        sums["loss"] += loss.item() / world
                        sums["clip_low"] += float(terms.low_clipped[m].sum())
                        sums["clip_high"] += float(terms.high_clipped[m].sum())
                        sums["tokens"] += float(m.sum())
                        if epoch == 0 and step_index == 0 and m.any():
                            ratio_max_dev = max(ratio_max_dev, float(((terms.ratio - 1).abs() * mask).max()))
                        if epoch == 0:
                            sums["entropy"] += float(entropy[m].sum())
                            sums["kl"] += float(terms.kl[m].sum()) if terms.kl is not None else 0.0
                            sums["first_tokens"] += float(m.sum())
                # All parameters (frozen ones have no gradient): FSDP recognises its own model's list and clips
                # the sharded norm; DeepSpeed clips by its config and returns None.
                norm = accelerator.clip_grad_norm_(list(self.model.parameters()), config.max_grad_norm)
                grad_norm += float("nan") if norm is None else float(norm)
                steps += 1
                self.optimizer.step()
                self.scheduler.step()
        self.model.eval()
        totals = torch.tensor([sums[n] for n in names], dtype=torch.float64, device=accelerator.device)
        if world > 1:
            totals = accelerator.reduce(totals, "sum")
            deviation = torch.tensor([ratio_max_dev], dtype=torch.float64, device=accelerator.device)
            ratio_max_dev = float(accelerator.reduce(deviation, "max"))
        summed = dict(zip(names, totals.tolist(), strict=True))
        tokens, first, steps = max(summed["tokens"], 1.0), max(summed["first_tokens"], 1.0), max(steps, 1)
        return {
            "loss": summed["loss"] / steps,
            "kl": summed["kl"] / first,
            "entropy": summed["entropy"] / first,
            "clip_ratio/low": summed["clip_low"] / tokens,
            "clip_ratio/high": summed["clip_high"] / tokens,
            "clip_fraction": (summed["clip_low"] + summed["clip_high"]) / tokens,
            "ratio_max_dev": ratio_max_dev,
            "grad_norm": grad_norm / steps,
            "learning_rate": float(self.scheduler.get_last_lr()[0]),
            "optimizer_steps": float(steps),
            "filtered_actions_fraction": 0.0,
        }

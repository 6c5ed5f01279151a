"""The GRPO reference loop for PromptLoop, on transformers + peft + accelerate.

One iteration, per process:

1. Draw ``queries_per_iteration`` queries; each gets a group of ``group_size`` episodes with different env
   seeds. All episodes run in lockstep through the batched env. At each refinement point the policy's
   input is rebuilt from the observation (a Markov state) and prompts are sampled for all episodes at once.
2. Advantage = terminal reward normalised within its group, ``(R - mean_g) / (std_g + eps)``, shared by every
   generated token of every action of the episode.
3. Loss per token: the PPO clipped surrogate ``-min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)`` plus
   ``beta`` times the k3 estimate of KL to the frozen reference (the same model with adapters disabled),
   summed over tokens and divided by the number of generated tokens of the iteration. The gradient is
   accumulated over micro-batches (one per decision point by default) and applied once per epoch.

With ``num_epochs=1`` the update is fully on-policy: the old log-probabilities are the new ones detached,
and the ratio is exactly 1. With more epochs they are recomputed beforehand by the same function on the
same inputs, and the first epoch's ratio is still exactly 1 (logged as ``ratio_max_dev``).

Multi-process: run under ``accelerate launch`` (on a CPU-only machine ``--multi_gpu --num_processes 2``
gives two gloo processes; ``--cpu`` silently starts one). Each process runs its own envs and groups; DDP
averages the gradients.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.error import DependencyNotInstalled
from tqdm.auto import tqdm

from promptloop_agents.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from promptloop_agents.configs import GRPOConfig
from promptloop_agents.mllm import MLLMAgent, PolicySample, pad_completions
from promptloop_agents.rollout import EnvBatch, Episode, RolloutTimes, run_episodes

logger = logging.getLogger(__name__)


def make_accelerator() -> Any:
    """The default ``accelerate.Accelerator``: GPU when there is one, CPU (gloo when multi-process) otherwise."""
    try:
        from accelerate import Accelerator
    except ImportError as err:
        raise DependencyNotInstalled('Training needs accelerate and peft: pip install "promptloop[agents]"') from err
    return Accelerator(cpu=not torch.cuda.is_available())


def group_advantages(rewards: np.ndarray, group_size: int, eps: float = 1e-4) -> np.ndarray:
    """Rewards normalised within consecutive groups of ``group_size`` (sample std, as TRL).

    >>> group_advantages(np.array([1.0, 3.0, 5.0, 5.0]), 2).round(3).tolist()
    [-0.707, 0.707, 0.0, 0.0]
    """
    groups = rewards.reshape(-1, group_size)
    std = groups.std(axis=1, ddof=1, keepdims=True) if group_size > 1 else np.zeros((len(groups), 1))
    return ((groups - groups.mean(axis=1, keepdims=True)) / (std + eps)).reshape(-1)


@dataclass
class MicroBatch:
    """Actions of one forward pass in the update, with their (cached) inputs and reference log-probs."""

    inputs: dict[str, torch.Tensor]
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    advantages: torch.Tensor
    ref_logps: torch.Tensor | None = None
    old_logps: torch.Tensor | None = None


class GRPOTrainer:
    """Trains an :class:`MLLMAgent` with GRPO on a PromptLoop env.

    Args:
        agent: the policy. LoRA adapters are added when it has none.
        config: hyper-parameters and run folder.
        envs: the batched env; its ``num_envs`` must divide ``queries_per_iteration * group_size``.
        queries: training queries.
        accelerator: an ``accelerate.Accelerator``; a default one (CPU when no GPU) otherwise.
    """

    def __init__(
        self,
        agent: MLLMAgent,
        config: GRPOConfig,
        envs: EnvBatch,
        queries: Sequence[str],
        accelerator: Any | None = None,
    ) -> None:
        episodes = config.queries_per_iteration * config.group_size
        if episodes % envs.num_envs:
            raise ValueError(
                f"envs.num_envs={envs.num_envs} must divide queries_per_iteration * group_size={episodes}."
            )
        if config.group_size < 2:
            raise ValueError(f"group_size must be >= 2 for group-normalised advantages; got {config.group_size}.")
        if not queries:
            raise ValueError("No training queries.")
        self.config, self.envs, self.queries = config, envs, list(queries)
        self.accelerator = accelerator or make_accelerator()
        if not agent.has_adapter:
            agent.add_lora(r=config.lora_r, alpha=config.lora_alpha, seed=config.seed)
        agent.model.to(self.accelerator.device)
        self.agent = agent
        self.params = [p for p in agent.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=0.0)
        self.model, self.optimizer = self.accelerator.prepare(agent.model, optimizer)
        self.run_dir = Path(config.output_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.metrics_file = self.run_dir / "metrics.jsonl"
        self.iteration = 0

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    # -- the loop ----------------------------------------------------------------------------------------

    def train(self) -> list[dict[str, float]]:
        """Run (or resume) the configured iterations; returns this call's metrics, one dict per iteration."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.config.resume:
            self.resume()
        history = []
        bar = tqdm(
            total=self.config.num_iterations,
            initial=self.iteration,
            desc="GRPO",
            disable=not (self.config.progress and self.is_main),
        )
        start = time.perf_counter()
        while self.iteration < self.config.num_iterations:
            metrics = self.step()
            history.append(metrics)
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", kl=f"{metrics['kl']:.4f}")
            out_of_time = 0 < self.config.max_train_seconds < time.perf_counter() - start
            flag = torch.tensor(float(out_of_time), device=self.accelerator.device)
            out_of_time = bool(self.accelerator.reduce(flag, "max"))
            last = self.iteration == self.config.num_iterations or out_of_time
            if self.iteration % self.config.save_every == 0 or last:
                self.save()
            if out_of_time:
                break
        bar.close()
        return history

    def step(self) -> dict[str, float]:
        """One GRPO iteration: rollouts, advantages, update, log."""
        config, rank = self.config, self.accelerator.process_index
        rng = np.random.default_rng([config.seed, self.iteration, rank])
        torch.manual_seed(int(rng.integers(2**62)))  # the policy's sampling (generate draws from it)
        chosen = rng.choice(len(self.queries), size=config.queries_per_iteration, replace=False)
        queries = [self.queries[i] for i in chosen for _ in range(config.group_size)]
        seeds = rng.integers(0, 2**31 - 1, size=len(queries))

        tick = time.perf_counter()
        times = RolloutTimes()
        samples: list[PolicySample] = []
        policy = self.accelerator.unwrap_model(self.model)

        def act(observations: list[dict]) -> list[str]:
            samples.append(self.agent.sample(observations, model=policy))
            return samples[-1].prompts

        episodes = run_episodes(self.envs, act, queries, seeds, times=times)
        rewards = np.array([e.reward for e in episodes])
        if config.malformed_penalty:
            rewards = rewards - config.malformed_penalty * self._malformed_per_episode(samples, len(episodes))
        advantages = group_advantages(rewards, config.group_size)
        tick_update = time.perf_counter()
        stats = self.update(self._micro_batches(samples, advantages))
        done = time.perf_counter()
        self.iteration += 1
        metrics = self._metrics(episodes, samples, stats)
        metrics.update(
            time_denoise=times.env,
            time_generate=times.policy,
            time_update=done - tick_update,
            time_iteration=done - tick,
        )
        if self.is_main:
            with open(self.metrics_file, "a") as handle:
                handle.write(json.dumps(metrics) + "\n")
        return metrics

    def _episode_rows(self, samples: list[PolicySample], num_episodes: int) -> list[np.ndarray]:
        """For each policy call, the episode index of each of its rows (calls go chunk by chunk, K per chunk)."""
        n = self.envs.num_envs
        per_chunk = len(samples) // (num_episodes // n)
        return [(index // per_chunk) * n + np.arange(n) for index in range(len(samples))]

    def _malformed_per_episode(self, samples: list[PolicySample], num_episodes: int) -> np.ndarray:
        counts = np.zeros(num_episodes)
        for sample, rows in zip(samples, self._episode_rows(samples, num_episodes), strict=True):
            counts[rows] += np.asarray(sample.malformed, dtype=np.float64)
        return counts

    def _micro_batches(self, samples: list[PolicySample], advantages: np.ndarray) -> list[MicroBatch]:
        """Split the iteration's actions into micro-batches and cache inputs and reference log-probs."""
        n = self.envs.num_envs
        size = self.config.micro_batch_size or n
        batches = []
        for sample, episode_ids in zip(samples, self._episode_rows(samples, len(advantages)), strict=True):
            for start in range(0, n, size):
                rows = list(range(start, min(start + size, n)))
                images = [sample.images[r] for r in rows] if sample.images is not None else None
                inputs = self.agent.build_inputs([sample.texts[r] for r in rows], images)
                ids, mask = pad_completions([sample.completions[r] for r in rows], self.agent.pad_token_id)
                adv = torch.tensor(advantages[episode_ids[rows]], dtype=torch.float32, device=self.accelerator.device)
                batch = MicroBatch(inputs, ids.to(adv.device), mask.to(adv.device), adv)
                with torch.no_grad():
                    if self.config.beta > 0:
                        with self.agent.model.disable_adapter():
                            batch.ref_logps = self.agent.completion_logps(self.agent.model, inputs, ids, mask)
                    if self.config.num_epochs > 1:
                        batch.old_logps = self.agent.completion_logps(self.agent.model, inputs, ids, mask)
                batches.append(batch)
        return batches

    def update(self, batches: list[MicroBatch]) -> dict[str, float]:
        """Clipped-ratio policy-gradient epochs with the KL penalty; returns diagnostics."""
        config = self.config
        num_tokens = sum(float(b.completion_mask.sum()) for b in batches)
        stats = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "ratio_max_dev": 0.0, "grad_norm": 0.0}
        for epoch in range(config.num_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            for index, batch in enumerate(batches):
                last = index == len(batches) - 1
                sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)
                with sync:
                    mask = batch.completion_mask.float()
                    logps = self.agent.completion_logps(
                        self.model, batch.inputs, batch.completion_ids, batch.completion_mask
                    )
                    old = logps.detach() if batch.old_logps is None else batch.old_logps
                    ratio = torch.exp(logps - old)
                    adv = batch.advantages[:, None]
                    clipped = ratio.clamp(1 - config.clip_epsilon, 1 + config.clip_epsilon)
                    per_token = -torch.min(ratio * adv, clipped * adv)
                    if batch.ref_logps is not None:
                        delta = batch.ref_logps - logps
                        kl = torch.exp(delta) - delta - 1
                        per_token = per_token + config.beta * kl
                        if epoch == 0:
                            stats["kl"] += (kl * mask).sum().item() / num_tokens
                    loss = (per_token * mask).sum() / num_tokens
                    self.accelerator.backward(loss)
                if epoch == 0:
                    with torch.no_grad():
                        stats["loss"] += loss.item()
                        deviation = ((ratio - 1).abs() * mask).max().item()
                        stats["ratio_max_dev"] = max(stats["ratio_max_dev"], deviation)
                        stats["clip_fraction"] += (
                            ((ratio - clipped).abs() > 0).float() * mask
                        ).sum().item() / num_tokens
            norm = self.accelerator.clip_grad_norm_(self.params, config.max_grad_norm)
            stats["grad_norm"] = float(norm) if epoch == 0 else stats["grad_norm"]
            self.optimizer.step()
        return stats

    def _metrics(self, episodes: list[Episode], samples: list[PolicySample], stats: dict) -> dict[str, float]:
        rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float64, device=self.accelerator.device)
        rewards = self.accelerator.gather(rewards).cpu().numpy()
        actions = [p for s in samples for p in s.prompts]
        metrics = {
            "iteration": self.iteration,
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()),
            "reward_max": float(rewards.max()),
            "malformed_fraction": float(np.mean([m for s in samples for m in s.malformed])),
            "completion_tokens": float(np.mean([len(c) for s in samples for c in s.completions])),
            "prompt_words": float(np.mean([len(p.split()) for p in actions])),
            "distinct_prompts": float(len(set(actions)) / max(len(actions), 1)),
        }
        for name in episodes[0].reward_components:
            metrics[f"reward/{name}"] = float(np.mean([e.reward_components[name] for e in episodes]))
        return {**metrics, **stats}

    # -- checkpoints ---------------------------------------------------------------------------------------

    def save(self) -> None:
        """Checkpoint (adapters, optimiser, iteration) atomically; the main process writes."""
        from peft import get_peft_model_state_dict

        self.accelerator.wait_for_everyone()
        if self.is_main:
            adapter = get_peft_model_state_dict(self.agent.model)
            extra = {"config": asdict(self.config)}
            save_checkpoint(
                self.checkpoint_dir, self.iteration, adapter, self.optimizer, extra, keep=self.config.keep_checkpoints
            )
        self.accelerator.wait_for_everyone()

    def resume(self) -> bool:
        """Load the newest checkpoint of the run folder, if any, and drop later lines of the metrics log."""
        from peft import set_peft_model_state_dict

        path = latest_checkpoint(self.checkpoint_dir)
        if path is None:
            return False
        state = load_checkpoint(path)
        device = self.accelerator.device
        set_peft_model_state_dict(self.agent.model, {k: v.to(device) for k, v in state["adapter"].items()})
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = state["iteration"]
        if self.is_main:
            logger.info("Resumed from %s (iteration %d).", path, self.iteration)
        if self.is_main and self.metrics_file.exists():
            lines = self.metrics_file.read_text().splitlines()
            kept = [line for line in lines if json.loads(line)["iteration"] <= self.iteration]
            self.metrics_file.write_text("".join(line + "\n" for line in kept))
        self.accelerator.wait_for_everyone()
        return True

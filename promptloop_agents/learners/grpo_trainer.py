"""The GRPO reference loop for PromptLoop, on transformers + peft + accelerate.

One iteration, per process:

1. Draw ``queries_per_iteration`` queries; each gets a group of ``group_size`` episodes (different env seeds,
   or one shared seed with ``same_noise``: same starting noise and refinement points). With ``query_cycle=N``
   the groups of iteration i are those of iteration i mod N (a fixed training set of N iterations' groups).
   All episodes run in lockstep through the Gymnasium vector env; at each refinement point the policy's input
   is rebuilt from the observation (a Markov state) and prompts are sampled for all episodes at once.
2. Reward = terminal reward minus format / truncation penalties; advantage = reward normalised within its
   group (:func:`~promptloop_agents.learners.objectives.group_advantages`; ``scale_rewards="batch"`` takes the std
   of the batch gathered from every rank), shared by every generated token of every action of the episode.
   Groups with equal rewards can be left out (``filter_zero_std_groups``), and answers cut at ``max_new_tokens``
   too (``mask_truncated_completions``): their tokens are masked, so every rank keeps the same shapes.
3. The actions are shuffled once and split into ``num_minibatches`` minibatches (one optimiser step
   each, gradients accumulated over micro-batches of ``micro_batch_size``), for ``num_iterations`` epochs.
   Loss: the clipped surrogate plus ``beta`` times the k3 KL to the frozen reference (adapters disabled, or a
   frozen copy under full fine-tuning), normalised as ``loss_type`` says over the step's actions or tokens on
   every rank (so N ranks with 1/N of the groups each make the update one rank with all of them would).

The old log-probabilities are recomputed by the same function on the same micro-batch inputs before the
first step, so the first step's ratio is exactly 1 (logged as ``ratio_max_dev``); later steps clip.

Multi-process: run under ``accelerate launch`` (DDP, FSDP or DeepSpeed through ``recipes/accelerate/``). Each
process runs its own envs and groups; the engine averages the gradients. Trainable weights are fp32 (master
weights under full fine-tuning, adapters under LoRA); ``mixed_precision: bf16`` computes in bf16. Rollouts and
the held-out evaluation generate inside :func:`~promptloop_agents.learners.distributed.unwrap_for_generation`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from promptloop_agents.learners.checkpoint import RunCheckpoints
from promptloop_agents.learners.distributed import make_accelerator, unwrap_for_generation
from promptloop_agents.learners.grpo_config import GRPOConfig
from promptloop_agents.learners.grpo_update import GRPOUpdate
from promptloop_agents.learners.held_out import HeldOutMonitor
from promptloop_agents.learners.objectives import group_advantages, zero_std_groups
from promptloop_agents.learners.tracking import RunLogger
from promptloop_agents.policies.protocol import TrainablePolicy
from promptloop_agents.rollout import Episode, RolloutTimes, run_episodes

# Parameters of vision towers stay frozen under full fine-tuning, as under LoRA.
VISION_PARAMETER_NAMES = ("visual.", "vision_tower", "vision_model")


def iteration_draws(
    config: GRPOConfig, iteration: int, num_queries: int, rank: int = 0
) -> tuple[np.random.Generator, int, np.ndarray, np.ndarray]:
    """What iteration ``iteration`` of process ``rank`` draws: ``(rng, sampling_seed, query_indices, env_seeds)``.

    ``query_indices`` and ``env_seeds`` have one entry per episode (``group_size`` consecutive episodes per
    group); the groups are drawn afresh, or, with ``query_cycle``, are those of the iteration this one replays.
    With ``same_noise`` a group shares one env seed. ``rng`` goes on to shuffle the update's minibatches.
    A run's draws can so be replayed after training, e.g. to score a fixed agent on the very same episodes
    (``research/toy_compose/compose_learner.py curve``).
    """
    rng = np.random.default_rng([config.seed, iteration, rank])
    sampling_seed = int(rng.integers(2**62))
    groups = rng
    if config.query_cycle:
        groups = np.random.default_rng([config.seed, iteration % config.query_cycle, rank, 1])
    chosen = groups.choice(num_queries, size=config.queries_per_iteration, replace=False)
    seeds = groups.integers(0, 2**31 - 1, size=config.queries_per_iteration * config.group_size)
    if config.same_noise:  # one env seed per group: same starting latent and refinement points
        seeds = np.repeat(seeds[:: config.group_size], config.group_size)
    return rng, sampling_seed, np.repeat(chosen, config.group_size), seeds


def enable_checkpointing(model: Any) -> None:
    """Activation (gradient) checkpointing, non-reentrant, under transformers 5's name or the older one."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class GRPOTrainer(GRPOUpdate, RunCheckpoints):
    """Trains a :class:`~promptloop_agents.policies.protocol.TrainablePolicy` with GRPO on a PromptLoop vector env.

    Args:
        policy: the policy (e.g. :class:`~promptloop_agents.policies.mllm.MLLMAgent`). Under ``finetuning="lora"`` LoRA
            adapters are added when it has none (through its ``add_lora``).
        config: hyper-parameters and run folder.
        envs: a Gymnasium vector env of PromptLoop; its ``num_envs`` must divide
            ``queries_per_iteration * group_size``.
        queries: training queries.
        accelerator: an ``accelerate.Accelerator``; by default one with ``config.report_to``'s trackers.
        eval_envs: a vector env with a uniform schedule for the periodic held-out evaluation (``eval_every``); the
            monitor is then built from the config (its metric models loaded now, on the main process).
        held_out: the held-out monitor itself, instead of ``eval_envs``.
        run_config: the whole run's config ``{section: {field: value}}``, stored in checkpoints and compared on
            resume; by default the GRPO section only.
    """

    def __init__(
        self,
        policy: TrainablePolicy,
        config: GRPOConfig,
        envs: Any,
        queries: Sequence[str],
        accelerator: Any | None = None,
        eval_envs: Any | None = None,
        run_config: dict[str, dict[str, Any]] | None = None,
        held_out: HeldOutMonitor | None = None,
    ) -> None:
        episodes = config.queries_per_iteration * config.group_size
        if episodes % envs.num_envs:
            raise ValueError(
                f"envs.num_envs={envs.num_envs} must divide queries_per_iteration * group_size={episodes}."
            )
        if not queries:
            raise ValueError("No training queries.")
        self.config, self.envs, self.queries = config, envs, list(queries)
        self.run_dir = Path(config.output_dir)
        self.accelerator = accelerator or make_accelerator(config.report_to, str(self.run_dir))
        self.policy = policy
        self.reference = self._setup_parameters(policy)
        if config.gradient_checkpointing:  # active in train mode only, i.e. in the update
            enable_checkpointing(policy.model)
        policy.model.to(self.accelerator.device)
        self.params = [p for p in policy.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        total_steps = config.max_steps * config.num_iterations * config.num_minibatches
        from transformers import get_scheduler

        scheduler = get_scheduler(
            config.lr_scheduler_type,
            optimizer,
            num_warmup_steps=int(round(config.warmup_ratio * total_steps)),
            num_training_steps=max(total_steps, 1),
        )
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(policy.model, optimizer, scheduler)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.metrics_file = self.run_dir / "metrics.jsonl"
        self.iteration = 0
        if held_out is None and eval_envs is not None and config.eval_every:
            held_out = HeldOutMonitor.from_config(config, eval_envs, build_metrics=self.is_main)
        self.held_out = held_out
        evaluate = self.evaluate_held_out if held_out is not None else None
        self.log = RunLogger(self, evaluate, run_config or {"grpo": asdict(config)})

    def _setup_parameters(self, policy: Any) -> Any:
        """Make the right parameters trainable, in fp32; return the frozen reference (None: adapters off, or beta 0).

        Full fine-tuning keeps fp32 master weights (the whole policy goes to fp32, so no module mixes dtypes;
        ``mixed_precision: bf16`` then computes in bf16), the reference stays in the loaded dtype. LoRA keeps
        fp32 adapters on the base in its loaded dtype (peft casts inputs to the adapters' dtype).
        """
        config = self.config
        reference = None
        if config.finetuning == "lora":
            if not getattr(policy, "has_adapter", False):
                policy.add_lora(r=config.lora_r, alpha=config.lora_alpha, seed=config.seed)
        else:
            for name, parameter in policy.model.named_parameters():
                parameter.requires_grad_(not any(part in name for part in VISION_PARAMETER_NAMES))
            if config.beta != 0:
                reference = copy.deepcopy(policy.model).eval().to(self.accelerator.device).requires_grad_(False)
            policy.model.float()
        for parameter in policy.model.parameters():
            if parameter.requires_grad and parameter.dtype != torch.float32:
                parameter.data = parameter.data.float()
        if config.mask_truncated_completions and not getattr(policy, "eos_token_ids", None):
            raise ValueError("mask_truncated_completions needs a policy with eos_token_ids.")
        return reference

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    # -- the loop ----------------------------------------------------------------------------------------

    def train(self) -> list[dict[str, float]]:
        """Run (or resume) the configured iterations; returns this call's metrics, one dict per iteration."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.config.resume:
            self.resume()
        self.log.start()
        history = []
        bar = tqdm(
            total=self.config.max_steps,
            initial=self.iteration,
            desc="GRPO",
            disable=not (self.config.progress and self.is_main),
        )
        start = time.perf_counter()
        while self.iteration < self.config.max_steps:
            metrics = self.step()
            history.append(metrics)
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", kl=f"{metrics['kl']:.4f}")
            out_of_time = 0 < self.config.max_train_seconds < time.perf_counter() - start
            flag = torch.tensor(float(out_of_time), device=self.accelerator.device)
            out_of_time = bool(self.accelerator.reduce(flag, "max"))
            last = self.iteration == self.config.max_steps or out_of_time
            if self.iteration % self.config.save_every == 0 or last:
                self.save()
            if out_of_time:
                break
        bar.close()
        self.log.end()
        return history

    def step(self) -> dict[str, float]:
        """One GRPO iteration: rollouts, advantages, update, log."""
        config, rank = self.config, self.accelerator.process_index
        rng, sampling_seed, chosen, seeds = iteration_draws(config, self.iteration, len(self.queries), rank)
        torch.manual_seed(sampling_seed)  # the policy's sampling (generate draws from it)
        queries = [self.queries[i] for i in chosen]

        tick = time.perf_counter()
        times = RolloutTimes()
        samples: list[Any] = []
        self.model.eval()
        with unwrap_for_generation(self.model, self.accelerator) as generator:

            def act(observations: list[dict]) -> list[str]:
                samples.append(self.policy.sample(observations, model=generator))
                return samples[-1].prompts

            episodes = run_episodes(self.envs, act, queries, seeds, times=times)
        rewards = self._penalised_rewards(episodes, samples)
        advantages = self.advantages(rewards)
        keep = ~zero_std_groups(rewards, config.group_size) if config.filter_zero_std_groups else None
        tick_update = time.perf_counter()
        stats = self.update(samples, advantages, keep, rng)
        done = time.perf_counter()
        self.iteration += 1
        metrics = self._metrics(episodes, samples, rewards, stats)
        metrics.update(
            time_denoise=times.env,
            time_generate=times.policy,
            time_update=done - tick_update,
            time_iteration=done - tick,
        )
        self.log.iteration(metrics, episodes, samples)
        return metrics

    def advantages(self, rewards: np.ndarray) -> np.ndarray:
        """This rank's advantages, normalised over the rewards gathered from every rank (groups never span ranks,
        so only ``scale_rewards="batch"`` differs from a per-rank computation)."""
        device = self.accelerator.device
        gathered = self.accelerator.gather(torch.as_tensor(rewards, dtype=torch.float64, device=device))
        advantages = group_advantages(gathered.cpu().numpy(), self.config.group_size, self.config.scale_rewards)
        start = self.accelerator.process_index * len(rewards)
        return advantages[start : start + len(rewards)]

    def evaluate_held_out(self) -> dict[str, float]:
        """The held-out monitor's evaluation: episodes split across ranks, generated inside the gather context,
        final images gathered and scored on the main process (``{}`` elsewhere)."""
        from accelerate.utils import gather_object

        monitor = self.held_out
        indices = monitor.shard(self.accelerator.process_index, self.accelerator.num_processes)
        torch.manual_seed(self.config.seed + 1 + self.accelerator.process_index)
        self.model.eval()
        with unwrap_for_generation(self.model, self.accelerator) as generator:
            images = monitor.rollout(lambda obs: self.policy.sample(obs, model=generator).prompts, indices)
        gathered = gather_object(list(zip(indices, images, strict=True)))
        return monitor.score(dict(gathered)) if self.is_main else {}

    def _episode_rows(self, samples: list[Any], num_episodes: int) -> list[np.ndarray]:
        """For each policy call, the episode index of each of its rows (calls go chunk by chunk, K per chunk)."""
        n = self.envs.num_envs
        per_chunk = len(samples) // (num_episodes // n)
        return [(index // per_chunk) * n + np.arange(n) for index in range(len(samples))]

    def _penalised_rewards(self, episodes: list[Episode], samples: list[Any]) -> np.ndarray:
        """Terminal rewards minus the format penalty per malformed answer and the truncation penalty per truncation."""
        rewards = np.array([e.reward for e in episodes], dtype=np.float64)
        if self.config.malformed_penalty:
            counts = np.zeros(len(episodes))
            for sample, rows in zip(samples, self._episode_rows(samples, len(episodes)), strict=True):
                counts[rows] += np.asarray(sample.malformed, dtype=np.float64)
            rewards = rewards - self.config.malformed_penalty * counts
        if self.config.truncation_penalty:
            rewards = rewards - self.config.truncation_penalty * np.array([e.truncated_prompts for e in episodes])
        return rewards

    def _metrics(self, episodes: list[Episode], samples: list[Any], rewards: np.ndarray, stats: dict) -> dict:
        gather = self.accelerator.gather
        raw = torch.tensor([e.reward for e in episodes], dtype=torch.float64, device=self.accelerator.device)
        raw = gather(raw).cpu().numpy()
        penalised = gather(torch.tensor(rewards, device=self.accelerator.device)).cpu().numpy()
        actions = [p for s in samples for p in s.prompts]
        zero = zero_std_groups(rewards, self.config.group_size)
        metrics = {
            "iteration": self.iteration,
            "reward_mean": float(raw.mean()),
            "reward_std": float(raw.std()),
            "reward_max": float(raw.max()),
            "penalised_reward_mean": float(penalised.mean()),
            "zero_std_group_fraction": float(zero.mean()),
            "malformed_fraction": float(np.mean([m for s in samples for m in s.malformed])),
            "truncated_fraction": sum(e.truncated_prompts for e in episodes)
            / max(sum(len(e.prompts) for e in episodes), 1),
            "completion_tokens": float(np.mean([len(c) for s in samples for c in s.completions])),
            "prompt_words": float(np.mean([len(p.split()) for p in actions])),
            "distinct_prompts": float(len(set(actions)) / max(len(actions), 1)),
        }
        for name in episodes[0].reward_components:
            metrics[f"reward/{name}"] = float(np.mean([e.reward_components[name] for e in episodes]))
        stats["filtered_actions_fraction"] = float(zero.mean()) if self.config.filter_zero_std_groups else 0.0
        return {**metrics, **stats}

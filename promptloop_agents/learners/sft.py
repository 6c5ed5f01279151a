"""Supervised warm start: teach a policy to write a teacher's prompts for real env observations.

RL from a randomly initialised (or copy-only) policy does not take off: the spike saw no learning from
random init and a collapse to empty prompts from a copy-the-query warm start. The warm start therefore
imitates a *varied* teacher (several sensible rewrites per query) on observations collected by rolling the
env out with that teacher, so that GRPO starts from a policy with a useful spread of prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from promptloop_agents.policies.mllm import MLLMAgent, pad_completions
from promptloop_agents.rollout import Observation, run_episodes


@dataclass
class SFTExample:
    """One supervised decision: the observation the policy sees and the prompt it should write."""

    observation: Observation
    target: str
    with_image: bool = True


def collect_examples(
    envs: gym.vector.VectorEnv,
    teacher: Callable[[Observation, np.random.Generator], str],
    queries: Sequence[str],
    seed: int = 0,
    text_only_fraction: float = 0.2,
    targets_per_observation: int = 1,
) -> list[SFTExample]:
    """Roll the env out with ``teacher`` (one episode per query) and keep every (observation, prompt) pair.

    Args:
        envs, teacher, queries, seed: the rollouts; ``teacher(observation, rng) -> prompt``.
        text_only_fraction: share of examples that hide the preview, so that the a-priori mode (no images)
            is in the warm start's distribution too.
        targets_per_observation: teacher prompts kept per observation (the first is the one played); more
            targets show more of the teacher's variety for the same denoising cost.
    """
    rng = np.random.default_rng(seed)
    examples: list[SFTExample] = []

    def act(observations: list[Observation]) -> list[str]:
        prompts = [teacher(obs, rng) for obs in observations]
        for obs, prompt in zip(observations, prompts, strict=True):
            for target in [prompt] + [teacher(obs, rng) for _ in range(targets_per_observation - 1)]:
                examples.append(SFTExample(dict(obs), target, with_image=bool(rng.random() >= text_only_fraction)))
        return prompts

    seeds = rng.integers(0, 2**31 - 1, size=len(queries))
    run_episodes(envs, act, queries, seeds)
    return examples


def text_only_examples(
    queries: Sequence[str],
    teacher: Callable[[Observation, np.random.Generator], str],
    per_query: int = 4,
    num_refinements: int = 5,
    seed: int = 0,
) -> list[SFTExample]:
    """Examples without a preview for many queries at no denoising cost (state: query, prompt in force, progress).

    The prompt in force is the query or one of the teacher's rewrites, the progress one of the refinement
    points. They teach the policy to carry the query's content over for every query of the set; the env
    rollouts of :func:`collect_examples` add real previews.
    """
    rng = np.random.default_rng(seed)
    examples = []
    for query in queries:
        for _ in range(per_query):
            segment = int(rng.integers(num_refinements))
            observation = {"query": query, "prompt": query, "segment": segment}
            observation["timestep"] = np.array([segment / num_refinements], dtype=np.float32)
            if segment and rng.random() < 0.5:
                observation["prompt"] = teacher(observation, rng)
            examples.append(SFTExample(observation, teacher(observation, rng), with_image=False))
    return examples


def answer_ids(agent: MLLMAgent, prompt: str) -> torch.Tensor:
    """The tokens the policy should generate for ``prompt``: the (tagged) prompt and the end-of-answer token."""
    text = f"<{agent.answer_tag}>{prompt}</{agent.answer_tag}>" if agent.answer_tag else prompt
    ids = agent.tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor([*ids, agent.eos_token_ids[0]], dtype=torch.long)


def supervised_finetune(
    agent: MLLMAgent,
    examples: Sequence[SFTExample],
    steps: int = 300,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    trainable: Callable[[str], bool] | None = None,
) -> list[float]:
    """Teacher-forced training of ``agent.model`` on ``examples`` (loss on the answer tokens only).

    Args:
        agent: the policy; its model is trained in place (all parameters unless ``trainable`` filters them).
        examples: (observation, target prompt) pairs.
        steps, batch_size, learning_rate: AdamW schedule (cosine decay to 10%).
        seed: batch sampling seed.
        progress: show a progress bar.
        trainable: parameter-name filter; default trains everything.

    Returns:
        The loss of every step (mean negative log-likelihood per answer token).
    """
    if not examples:
        raise ValueError("No SFT examples.")
    rng = np.random.default_rng(seed)
    params = [p for n, p in agent.model.named_parameters() if trainable is None or trainable(n)]
    for name, param in agent.model.named_parameters():
        param.requires_grad_(trainable is None or trainable(name))
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(s / max(steps, 1), 1.0)))
    )
    targets = [answer_ids(agent, ex.target) for ex in examples]
    losses: list[float] = []
    for _ in tqdm(range(steps), desc="warm start (SFT)", disable=not progress, leave=False):
        rows = rng.choice(len(examples), size=min(batch_size, len(examples)), replace=False)
        texts, images = agent.render([examples[i].observation for i in rows], [examples[i].with_image for i in rows])
        ids, mask = pad_completions([targets[i] for i in rows], agent.pad_token_id)
        logps = agent.completion_logps(agent.model, agent.build_inputs(texts, images), ids, mask)
        loss = -logps.sum() / mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    for param in agent.model.parameters():
        param.requires_grad_(False)
    agent.model.eval()
    return losses


def greedy_match_rate(agent: MLLMAgent, examples: Sequence[SFTExample], limit: int = 64) -> float:
    """Fraction of ``examples`` whose greedy answer equals the target (a quick warm-start check)."""
    chosen = [ex for ex in examples if ex.with_image][:limit]
    if not chosen:
        return float("nan")
    do_sample, agent.do_sample = agent.do_sample, False
    try:
        prompts = agent.sample([ex.observation for ex in chosen], with_images=True).prompts
    finally:
        agent.do_sample = do_sample
    return float(np.mean([p == ex.target for p, ex in zip(prompts, chosen, strict=True)]))

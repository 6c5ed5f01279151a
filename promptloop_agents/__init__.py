"""Reference agents for PromptLoop-v0: baselines and the PromptLoop learner (an MLLM policy trained with GRPO).

The folder carries its import name; agents use the env only through the Gymnasium
API, never the reverse.

>>> from promptloop_agents import IdentityAgent
>>> IdentityAgent().act({"query": "a red circle", "prompt": "a red circle"})
'a red circle'

Design choices (the paper leaves these open):

- **State**: rebuilt at every decision from the observation (a Markov state, not a growing chat): the x0
  preview, the query, the prompt in force and the fraction of denoising done, rendered with the model's
  own chat template (:mod:`promptloop_agents.policies.processing`). The answer format is ``<prompt>...</prompt>`` for
  instruct models and the bare prompt for the toy policy; a malformed answer keeps the prompt in force and
  is counted (``MLLMAgent.num_malformed``, ``malformed_fraction`` in the training log).
- **Sampling**: the full softmax at ``temperature`` (``top_k=0``, ``top_p=1``, ``repetition_penalty=1``
  passed explicitly, since instruct checkpoints ship other defaults), structural special tokens banned in
  ``generate`` and masked to -inf in the training forward, so both use one distribution.
- **GRPO** (:mod:`promptloop_agents.learners.grpo_trainer`): group-normalised terminal reward shared by every
  generated token of every action; PPO clip 0.2; k3 KL to the adapter-free reference, beta 0.04; LoRA r=16 on the
  language model's linear layers (vision tower frozen); random refinement points in training, uniform in evaluation;
  loss normalised by the iteration's generated-token count (``loss_type="dapo"``; ``grpo`` and ``dr_grpo`` too);
  fully on-policy by default (ratio exactly 1). It trains any :class:`TrainablePolicy` through Gymnasium vector
  envs; runs are described by ``recipes/*.yaml`` (:mod:`promptloop_agents.configs`).
- **Warm start**: RL from a random or copy-only policy does not take off (the TRL spike measured both), so
  the toy policy first imitates a varied rewrite teacher on real env previews (:mod:`promptloop_agents.learners.sft`,
  :mod:`promptloop_agents.policies.toy_rewrites`).
- **Checkpoints** (:mod:`promptloop_agents.learners.checkpoint`): one safetensors file per checkpoint (adapters +
  optimiser + iteration), written to a temporary name then ``os.replace``-d; every iteration re-seeds its
  queries, env seeds and sampling from (seed, iteration), so a resumed run continues exactly.
- **Scale-out**: ``accelerate launch`` (each process runs its own batched env and groups; DDP averages the
  gradients). On a CPU-only machine ``--multi_gpu --num_processes 2`` gives two gloo processes.
"""

from __future__ import annotations

from promptloop_agents.policies.baselines import IdentityAgent, RandomModifierAgent, StaticRewriteAgent
from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.protocol import Agent, TrainablePolicy, act_batch

_LAZY = {"PromptLoopPipeline", "PromptLoopPipelineOutput"}


def __getattr__(name: str) -> object:
    # The pipeline imports the env's core and backbones: loaded on first use, not with the agents.
    if name in _LAZY:
        from promptloop_agents import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'promptloop_agents' has no attribute {name!r}")


__all__ = [
    "Agent",
    "IdentityAgent",
    "MLLMAgent",
    "PromptLoopPipeline",
    "PromptLoopPipelineOutput",
    "RandomModifierAgent",
    "StaticRewriteAgent",
    "TrainablePolicy",
    "act_batch",
]

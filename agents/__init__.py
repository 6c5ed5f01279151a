"""Reference agents for PromptLoop-v0: baselines and the PromptLoop learner (an MLLM policy trained with GRPO).

Installed as ``promptloop_agents``. Agents use the env only through the Gymnasium API.

>>> from promptloop_agents import IdentityAgent
>>> IdentityAgent().act({"query": "a red circle", "prompt": "a red circle"})
'a red circle'
"""

from __future__ import annotations

from promptloop_agents.baselines import IdentityAgent, RandomModifierAgent, StaticRewriteAgent
from promptloop_agents.mllm import MLLMAgent
from promptloop_agents.protocol import Agent, act_batch

__all__ = ["Agent", "IdentityAgent", "MLLMAgent", "RandomModifierAgent", "StaticRewriteAgent", "act_batch"]

"""PromptLoop: a Gymnasium environment for rewriting a diffusion model's prompt during sampling.

``import promptloop_env`` registers ``PromptLoop-v0``:

>>> import gymnasium as gym
>>> import promptloop_env
>>> env = gym.make("PromptLoop-v0", backbone="tiny", reward="jpeg-incompressibility", num_inference_steps=4,
...                num_refinements=2, preview="latent_rgb", preview_size=32)
>>> obs, info = env.reset(seed=0, options={"query": "a red circle"})
>>> sorted(obs)
['image', 'prompt', 'query', 'segment', 'timestep']
"""

from __future__ import annotations

from gymnasium.envs.registration import register
from gymnasium.envs.registration import registry as gym_registry

from promptloop_env import toy  # noqa: F401  (the toy worlds register their backbones, rewards, prompt sets)
from promptloop_env.config import PromptLoopConfig
from promptloop_env.core import PromptLoopCore
from promptloop_env.env import PromptLoopEnv
from promptloop_env.registry import load_plugins
from promptloop_env.spaces import PROMPT_CHARSET

__version__ = "0.2.0"

load_plugins()  # installed packages' backbones, rewards, previews and prompt sets (see promptloop_env.registry)

if "PromptLoop-v0" not in gym_registry:
    register(
        id="PromptLoop-v0",
        entry_point="promptloop_env.env:PromptLoopEnv",
        vector_entry_point="promptloop_env.vector_env:PromptLoopVectorEnv",
        # No kwargs here: the defaults live in PromptLoopConfig, and spec kwargs would override a config= object.
    )

__all__ = ["PROMPT_CHARSET", "PromptLoopConfig", "PromptLoopCore", "PromptLoopEnv", "__version__"]

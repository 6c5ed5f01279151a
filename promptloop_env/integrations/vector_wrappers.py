"""Vector forms of :class:`~promptloop_env.wrappers.DiscretizePrompt` and
:class:`~promptloop_env.wrappers.DropTextObservation`, for ``PromptLoopVectorEnv``.

A single-env wrapper cannot wrap the sub-envs of ``PromptLoopVectorEnv``: they are not env objects (the vector
env steps N episodes through one batched model call), and wrapping N single envs instead (``SyncVectorEnv``)
gives up that batching. Gymnasium's answer is a vector wrapper per transform (``gymnasium.wrappers.vector``
mirrors ``gymnasium.wrappers`` name for name), and these two follow it. Its generic ``VectorizeTransform*``
helpers do not fit: they need a stateless ``TransformObservation`` / ``ActionWrapper``, while
``DiscretizePrompt`` needs each sub-env's query and ``DropTextObservation`` is a plain key filter that needs no
per-sub-env loop. Each vector wrapper builds its single-env counterpart on a stand-in sub-env, so the
arguments are checked by the same code, give the same spaces and the same errors, and each prompt is written
by the single wrapper's own :meth:`~promptloop_env.wrappers.DiscretizePrompt.prompt`.

All three autoreset modes are supported (``SAME_STEP``'s ``final_obs`` is filtered too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from promptloop_env import wrappers
from promptloop_env.wrappers import MODIFIER_TEMPLATE


class _SubEnvStandIn(gym.Env):
    """One sub-env's spaces, for building a single-env wrapper; ``reset`` only echoes the query it is given."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        return {}, {"query": (options or {})["query"]}


class DropTextObservation(VectorWrapper):
    """Remove the ``Text`` fields from a vector env's batched ``Dict`` observation.

    >>> import gymnasium as gym
    >>> import promptloop_env
    >>> envs = gym.make_vec("PromptLoop-v0", num_envs=2, backbone="tiny", num_inference_steps=4,
    ...                     num_refinements=2, preview="latent_rgb", preview_size=32, reward="jpeg-incompressibility")
    >>> envs = DropTextObservation(envs)
    >>> obs, info = envs.reset(seed=0)
    >>> sorted(obs), obs["image"].shape
    (['image', 'segment', 'timestep'], (2, 32, 32, 3))

    Args:
        env: a vector env over ``PromptLoop-v0`` (or a vector wrapper of one).
        keep: keys to keep; default: every key whose space is not ``Text``.
    """

    def __init__(self, env: VectorEnv, keep: Sequence[str] | None = None) -> None:
        super().__init__(env)
        self.single = wrappers.DropTextObservation(
            _SubEnvStandIn(env.single_observation_space, env.single_action_space), keep=keep
        )
        self.keep = self.single.keep
        self.single_observation_space = self.single.observation_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
        obs, infos = self.env.reset(seed=seed, options=options)
        return self.observations(obs), infos

    def step(self, actions: Any) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        if self.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP and "final_obs" in infos:
            final = infos["final_obs"]
            for i in np.flatnonzero(infos["_final_obs"]):
                final[i] = self.single.observation(final[i])
        return self.observations(obs), rewards, terminated, truncated, infos

    def observations(self, observations: dict[str, Any]) -> dict[str, Any]:
        """The batched observation without its text fields (the arrays themselves are not copied)."""
        return {key: observations[key] for key in self.keep}


class DiscretizePrompt(VectorWrapper):
    """Replace a vector env's prompts by indices into a bank: action ``k`` of sub-env ``i`` is prompt ``k``.

    Same arguments and prompts as :class:`promptloop_env.wrappers.DiscretizePrompt`; ``{query}`` is each
    sub-env's own query, tracked from ``info["query"]`` at every reset and autoreset. The action is an integer
    array of shape ``(num_envs,)`` (``MultiDiscrete``; the single action space is ``Discrete(K)``).

    >>> import gymnasium as gym
    >>> import promptloop_env
    >>> envs = gym.make_vec("PromptLoop-v0", num_envs=2, backbone="tiny", num_inference_steps=4,
    ...                     num_refinements=2, preview="latent_rgb", preview_size=32, reward="jpeg-incompressibility")
    >>> envs = DiscretizePrompt(envs, modifiers=["", "bright colours"])
    >>> envs.single_action_space, envs.action_space
    (Discrete(2), MultiDiscrete([2 2]))
    >>> obs, info = envs.reset(seed=0, options={"query": ["a red circle", "a blue square"]})
    >>> obs, reward, terminated, truncated, info = envs.step([1, 0])
    >>> info["prompt"].tolist()
    ['a red circle, bright colours', 'a blue square']

    Args:
        env: a vector env over ``PromptLoop-v0`` whose single action space is ``Text``.
        prompts: the prompt bank.
        modifiers: the modifier bank.
        template: how a modifier is applied; fields ``{query}`` and ``{modifier}``.
    """

    def __init__(
        self,
        env: VectorEnv,
        prompts: Sequence[str] | None = None,
        modifiers: Sequence[str] | None = None,
        template: str = MODIFIER_TEMPLATE,
    ) -> None:
        super().__init__(env)
        # One single-env wrapper per sub-env, each on a stand-in that only knows the sub-env's current query.
        self.singles = [
            wrappers.DiscretizePrompt(
                _SubEnvStandIn(env.single_observation_space, env.single_action_space),
                prompts=prompts,
                modifiers=modifiers,
                template=template,
            )
            for _ in range(self.num_envs)
        ]
        self.bank = self.singles[0].bank
        self.single_action_space = self.singles[0].action_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, infos = self.env.reset(seed=seed, options=options)
        self._track_queries(infos)
        return obs, infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(
                f"actions must have shape ({self.num_envs},) (one index per sub-env); got {actions.shape}."
            )
        result = self.env.step(self.prompts(actions))
        self._track_queries(result[-1])
        return result

    def prompts(self, actions: np.ndarray) -> list[str]:
        """The prompt each sub-env's action sends for its current query."""
        return [single.prompt(action.item()) for single, action in zip(self.singles, actions, strict=True)]

    def _track_queries(self, infos: dict[str, Any]) -> None:
        for i in np.flatnonzero(infos.get("_query", [])):
            self.singles[i].reset(options={"query": str(infos["query"][i])})

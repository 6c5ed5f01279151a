"""A stable-baselines3 ``VecEnv`` over a Gymnasium vector env, so SB3 keeps PromptLoop's batched stepping.

SB3's own ``DummyVecEnv`` steps N single envs one after the other (N model calls per denoising step);
:class:`SB3VecEnv` drives one :class:`~promptloop_env.vector_env.PromptLoopVectorEnv` instead (one batched call
for all N). :func:`make_sb3_vec_env` builds the usual stack: the vector env, the vector
:class:`~promptloop_env.integrations.vector_wrappers.DropTextObservation` (SB3 takes no ``Text`` spaces) and
:class:`~promptloop_env.integrations.vector_wrappers.DiscretizePrompt` (a prompt bank), then the adapter.

SB3's semantics are kept: ``step_wait`` returns the observations of the episodes that follow any that ended,
with the ended one's last observation in ``infos[i]["terminal_observation"]`` and
``infos[i]["TimeLimit.truncated"]``; ``reset`` uses the seeds of :meth:`seed` (sub-env ``i`` gets
``seed + i``, as ``DummyVecEnv`` does) and the options of :meth:`set_options` once. The wrapped vector env must
use ``AutoresetMode.DISABLED``: the adapter resets the ended sub-envs itself, together, in one batched
``reset(options={"reset_mask": ...})`` right after the step (as ``DummyVecEnv`` resets inside ``step_wait``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.wrappers.vector import DictInfoToList

from promptloop_env.integrations.vector_wrappers import DiscretizePrompt, DropTextObservation

try:
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise DependencyNotInstalled(
        "promptloop_env.integrations.sb3 needs stable-baselines3: pip install promptloop[sb3]"
    ) from err


def _sub_observation(obs: Any, index: int) -> Any:
    """Sub-env ``index``'s part of a batched observation (a copy)."""
    if isinstance(obs, dict):
        return {key: _sub_observation(value, index) for key, value in obs.items()}
    return np.array(obs[index], copy=True)


def _text_fields(space: spaces.Space) -> list[str]:
    if isinstance(space, spaces.Dict):
        return [key for key, sub in space.spaces.items() if isinstance(sub, spaces.Text)]
    return ["(the space)"] if isinstance(space, spaces.Text) else []


class SB3VecEnv(VecEnv):
    """A stable-baselines3 ``VecEnv`` that drives one Gymnasium vector env (``AutoresetMode.DISABLED``).

    >>> import gymnasium as gym
    >>> import promptloop_env
    >>> from gymnasium.vector import AutoresetMode
    >>> from promptloop_env.integrations.vector_wrappers import DiscretizePrompt, DropTextObservation
    >>> envs = gym.make_vec("PromptLoop-v0", num_envs=2, autoreset_mode=AutoresetMode.DISABLED, backbone="tiny",
    ...                     num_inference_steps=4, num_refinements=1, preview="latent_rgb", preview_size=36,
    ...                     reward="jpeg-incompressibility")
    >>> venv = SB3VecEnv(DiscretizePrompt(DropTextObservation(envs), modifiers=["", "bright colours"]))
    >>> venv.seed(0)
    [0, 1]
    >>> obs = venv.reset()
    >>> obs["image"].shape
    (2, 36, 36, 3)
    >>> obs, rewards, dones, infos = venv.step(np.array([1, 0]))
    >>> dones.tolist(), sorted(infos[0]["terminal_observation"])
    ([True, True], ['image', 'segment', 'timestep'])

    Args:
        envs: a Gymnasium vector env (``PromptLoopVectorEnv``, possibly wrapped) made with
            ``autoreset_mode=AutoresetMode.DISABLED`` and array-only spaces.
    """

    def __init__(self, envs: VectorEnv) -> None:
        if not isinstance(envs, VectorEnv):
            raise TypeError(f"SB3VecEnv needs a gymnasium.vector.VectorEnv; got {type(envs).__name__}.")
        mode = envs.metadata.get("autoreset_mode")
        if mode != AutoresetMode.DISABLED:
            raise ValueError(
                f"SB3VecEnv resets ended sub-envs itself and needs autoreset_mode=AutoresetMode.DISABLED; got {mode}. "
                "Make the vector env with gym.make_vec(..., autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED)."
            )
        text = _text_fields(envs.single_observation_space) + [
            f"action: {f}" for f in _text_fields(envs.single_action_space)
        ]
        if text:
            raise TypeError(
                f"stable-baselines3 takes no Text spaces; this env has {text}. Wrap it with "
                "promptloop_env.integrations.vector_wrappers.DropTextObservation and DiscretizePrompt "
                "(or use make_sb3_vec_env)."
            )
        self.envs = DictInfoToList(envs)  # SB3 wants one info dict per env
        self._actions: np.ndarray | None = None
        super().__init__(envs.num_envs, envs.single_observation_space, envs.single_action_space)

    def reset(self) -> Any:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, self.reset_infos = self.envs.reset(seed=seeds, options=self._merged_options())
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions).")
        obs, rewards, terminated, truncated, info_list = self.envs.step(self._actions)
        self._actions = None
        dones = np.logical_or(terminated, truncated)
        for i, info in enumerate(info_list):
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        if dones.any():
            for i in np.flatnonzero(dones):
                info_list[i]["terminal_observation"] = _sub_observation(obs, i)
            obs, reset_infos = self.envs.reset(options={"reset_mask": dones})
            for i, info in enumerate(reset_infos):
                if dones[i]:
                    self.reset_infos[i] = info
        return obs, np.asarray(rewards, dtype=np.float32), dones, info_list

    def close(self) -> None:
        self.envs.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        images = self.envs.render() if self.render_mode == "rgb_array" else None
        return list(images) if images is not None else [None] * self.num_envs

    # The sub-envs are not objects of their own: attributes and methods are those of the one vector env.
    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.envs, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.envs, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        result = getattr(self.envs, method_name)(*method_args, **method_kwargs)
        return [result] * len(list(self._get_indices(indices)))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))

    def _merged_options(self) -> dict[str, Any] | None:
        """SB3's per-env option dicts as one vector reset's options (a per-sub-env sequence for each key)."""
        keys = sorted({key for options in self._options for key in options})
        if not keys:
            return None
        return {key: [options.get(key) for options in self._options] for key in keys}


def make_sb3_vec_env(
    num_envs: int,
    *,
    prompt_bank: Iterable[str] | None = None,
    modifier_bank: Iterable[str] | None = None,
    seed: int | None = None,
    **env_kwargs: Any,
) -> SB3VecEnv:
    """``num_envs`` PromptLoop episodes for SB3: the batched vector env, text dropped, a prompt bank as action.

    >>> import promptloop_env
    >>> venv = make_sb3_vec_env(2, modifier_bank=["", "high contrast"], seed=0, backbone="tiny",
    ...                         num_inference_steps=4, num_refinements=1, preview="latent_rgb", preview_size=36,
    ...                         reward="jpeg-incompressibility")
    >>> venv.action_space, venv.reset()["segment"].tolist()
    (Discrete(2), [0, 0])

    Args:
        num_envs: episodes stepped together (one batched model call per step).
        prompt_bank: complete prompts, one per action (``{query}`` is each episode's query); or
        modifier_bank: modifiers appended to the query, one per action (give exactly one of the two).
        seed: seed of the first reset (sub-env ``i`` gets ``seed + i``); None draws one.
        **env_kwargs: the arguments of ``PromptLoop-v0`` (``backbone``, ``reward``, ``prompts``, ...).
    """
    envs = gym.make_vec(
        "PromptLoop-v0",
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.DISABLED,
        **env_kwargs,
    )
    envs = DiscretizePrompt(DropTextObservation(envs), prompts=prompt_bank, modifiers=modifier_bank)
    venv = SB3VecEnv(envs)
    if seed is not None:
        venv.seed(seed)
    return venv

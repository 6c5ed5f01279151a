"""``PromptLoopVectorEnv``: N PromptLoop episodes denoised together, one batched model call per step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from promptloop_env.core import Episode, PromptLoopCore
from promptloop_env.env import PromptLoopEnv
from promptloop_env.validators import check_action, check_int, check_render_mode, check_reset_options


class PromptLoopVectorEnv(VectorEnv):
    """``num_envs`` PromptLoop episodes stepped together through the backbone's batched denoising.

    Built by ``gym.make_vec("PromptLoop-v0", num_envs=N, vectorization_mode="vector_entry_point", **kwargs)``
    (the default mode for this id), with the keyword arguments of :class:`PromptLoopEnv`. Each ``step`` makes
    one denoiser call per denoising step for all running episodes (classifier-free guidance included), even
    when their refinement points differ (``refine_schedule="random"``): the backbone advances each episode by
    its own count. Episodes that end in the same step are decoded together and scored by one reward call.

    Observations are batched as Gymnasium batches a ``Dict``: ``image`` ``uint8 [N, S, S, 3]``, ``query``
    and ``prompt`` tuples of N ``str``, ``segment`` ``int64 [N]``, ``timestep`` ``float32 [N, 1]``. The
    action is a sequence of N prompts (``str``). ``info`` is a dict of arrays with ``_key`` masks, as in
    ``SyncVectorEnv``.

    Equivalence with single envs: sub-env ``i`` keeps its own ``np_random``; ``reset(seed=s)`` seeds it with
    ``s + i`` (a list seeds each sub-env with its own entry, as in ``SyncVectorEnv``), so sub-episode ``i``
    draws the same query, noise seed and refinement points as ``PromptLoopEnv.reset(seed=s + i)``, and later
    resets continue its generator as a single env's would. Given the same actions, its images equal the single
    env's up to floating-point batching noise (within one grey level on CPU) and its rewards are computed on
    those images.

    Autoreset: ``autoreset_mode`` is Gymnasium's ``NEXT_STEP`` by default (a sub-env that ended is reset by
    the next ``step``, whose action for it is ignored, with reward 0.0); ``SAME_STEP`` (the terminal
    observation and info go to ``info["final_obs"]`` / ``info["final_info"]``) and ``DISABLED`` (reset
    ended sub-envs with ``options={"reset_mask": mask}``) are supported too. All episodes have
    ``num_refinements`` steps, so with a common reset they end together.

    ``reset(options=...)`` takes ``query`` and ``noise_seed``, each either one value for every sub-env or a
    sequence of ``num_envs`` values (None entries are drawn), and ``reset_mask``.

    >>> import gymnasium as gym
    >>> import promptloop_env
    >>> envs = gym.make_vec("PromptLoop-v0", num_envs=2, backbone="tiny", num_inference_steps=4, num_refinements=2,
    ...                     preview="latent_rgb", preview_size=32, reward="jpeg-incompressibility")
    >>> obs, info = envs.reset(seed=0, options={"query": ["a red circle", "a blue square"]})
    >>> obs["image"].shape, obs["query"]
    ((2, 32, 32, 3), ('a red circle', 'a blue square'))
    >>> obs, reward, terminated, truncated, info = envs.step(["a bright red circle", "a blue square"])
    >>> obs["segment"].tolist(), terminated.tolist()
    ([1, 1], [False, False])

    Args:
        num_envs: number of episodes stepped together.
        autoreset_mode: a ``gymnasium.vector.AutoresetMode`` (or its value as a str).
        render_mode: None or ``"rgb_array"`` (``render()`` returns each sub-env's latest preview).
        **env_kwargs: the other arguments of :class:`PromptLoopEnv`: ``config`` and the fields of
            :class:`~promptloop_env.config.PromptLoopConfig` (``backbone``, ``reward``, ``prompts``, ...), which
            configure this env's :class:`~promptloop_env.core.PromptLoopCore` (``self.core``).
    """

    metadata = {**PromptLoopEnv.metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        **env_kwargs: Any,
    ) -> None:
        self.num_envs = check_int("num_envs", num_envs, 1)
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError as err:
            valid = ", ".join(repr(mode.value) for mode in AutoresetMode)
            raise ValueError(f"autoreset_mode must be one of {valid}; got {autoreset_mode!r}.") from err
        env_kwargs.pop("max_episode_steps", None)  # make_vec forwards a spec's limit; episodes have a fixed length
        self.render_mode = check_render_mode(render_mode)
        self.core = PromptLoopCore(env_kwargs.pop("config", None), **env_kwargs)
        self.autoreset_mode = autoreset_mode
        self.metadata = {**self.metadata, "autoreset_mode": autoreset_mode}
        self.single_observation_space = self.core.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._episodes: list[Episode | None] = [None] * self.num_envs
        self._ended = np.zeros(self.num_envs, dtype=np.bool_)

    # -- Gymnasium API ------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Reset every sub-env (or those of ``options["reset_mask"]``); see the class docstring for seeding."""
        seeds = self._sub_seeds(seed)
        if isinstance(seed, (int, np.integer)):
            super().reset(seed=int(seed))
        options = check_reset_options(options, extra=("reset_mask",))
        mask = self._reset_mask(options.pop("reset_mask", None))
        queries = self._per_env("query", options.get("query"))
        noise_seeds = self._per_env("noise_seed", options.get("noise_seed"))
        indices = np.flatnonzero(mask).tolist()
        for i in indices:
            if seeds[i] is not None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        infos = self._start(indices, [queries[i] for i in indices], [noise_seeds[i] for i in indices])
        self._ended[mask] = False
        return self._observations(), infos

    def step(
        self, actions: Sequence[str]
    ) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Apply one prompt per sub-env; sub-envs waiting for their autoreset (``NEXT_STEP``) are reset instead."""
        if isinstance(actions, np.ndarray):
            actions = actions.tolist()
        if isinstance(actions, str) or not isinstance(actions, Sequence) or len(actions) != self.num_envs:
            raise TypeError(
                f"actions must be a sequence of num_envs={self.num_envs} prompts (str); got {type(actions).__name__}"
                + (f" of length {len(actions)}." if isinstance(actions, Sequence) else ".")
            )
        if any(ep is None for ep in self._episodes):
            raise RuntimeError("Call reset() before step().")
        to_reset = np.flatnonzero(self._ended).tolist() if self.autoreset_mode == AutoresetMode.NEXT_STEP else []
        to_step = [i for i in range(self.num_envs) if i not in to_reset]
        if self._ended[to_step].any():
            raise RuntimeError(
                f"Sub-envs {np.flatnonzero(self._ended).tolist()} have terminated and autoreset_mode is DISABLED: "
                "reset them with reset(options={'reset_mask': mask})."
            )
        for i in to_step:
            check_action(actions[i])
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=np.bool_)
        stepped = [self._episodes[i] for i in to_step]
        if stepped:
            rewards[to_step] = self.core.advance(stepped, [actions[i] for i in to_step])
        terminated[to_step] = [ep.terminated for ep in stepped]
        sub_infos = {i: self.core.info(ep) for i, ep in zip(to_step, stepped, strict=True)}
        infos: dict[str, Any] = {}
        ended = np.flatnonzero(terminated).tolist() if self.autoreset_mode == AutoresetMode.SAME_STEP else []
        for i in ended:  # as SyncVectorEnv: the terminal step goes to final_obs / final_info, then the reset
            final = {"final_obs": self.core.observation(self._episodes[i]), "final_info": sub_infos.pop(i)}
            infos = self._add_info(infos, final, i)
        # NEXT_STEP resets the sub-envs that ended at the last step, SAME_STEP those that end now.
        infos = self._start(to_reset + ended, infos=infos)
        for i, info in sub_infos.items():
            infos = self._add_info(infos, info, i)
        self._ended = terminated & (self.autoreset_mode != AutoresetMode.SAME_STEP)
        return self._observations(), rewards, terminated, np.zeros(self.num_envs, dtype=np.bool_), infos

    def render(self) -> tuple[np.ndarray | None, ...] | None:
        """The latest preview of each sub-env when ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array":
            return None
        return tuple(None if ep is None else ep.image.copy() for ep in self._episodes)

    def close_extras(self, **kwargs: Any) -> None:
        self._episodes = [None] * self.num_envs

    # -- helpers ------------------------------------------------------------------------------------
    def _start(
        self,
        indices: list[int],
        queries: list[str | None] | None = None,
        noise_seeds: list[int | None] | None = None,
        infos: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Begin episodes for the sub-envs ``indices`` (one batched preview) and add their reset infos.

        ``queries`` and ``noise_seeds`` hold one entry per index; None (or a None entry) draws it.
        """
        infos = {} if infos is None else infos
        if not indices:
            return infos
        for i in indices:
            if self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random()
        drawn = [None] * len(indices)
        episodes = self.core.start([self._rngs[i] for i in indices], queries or drawn, noise_seeds or drawn)
        for i, ep in zip(indices, episodes, strict=True):
            self._episodes[i] = ep
            infos = self._add_info(infos, self.core.info(ep), i)
        return infos

    def _observations(self) -> dict[str, Any]:
        obs = [self.core.observation(ep) for ep in self._episodes]
        return {
            "image": np.stack([o["image"] for o in obs]),
            "query": tuple(o["query"] for o in obs),
            "prompt": tuple(o["prompt"] for o in obs),
            "segment": np.array([o["segment"] for o in obs], dtype=np.int64),
            "timestep": np.stack([o["timestep"] for o in obs]),
        }

    def _sub_seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"seed must be an int, None or a list of num_envs={self.num_envs} seeds; got {seed!r}.")
        return seeds

    def _reset_mask(self, mask: Any) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_envs, dtype=np.bool_)
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
            raise TypeError(
                f"options['reset_mask'] must be a bool numpy array of shape ({self.num_envs},); got {mask!r}."
            )
        if not mask.any():
            raise ValueError("options['reset_mask'] must select at least one sub-env.")
        return mask

    def _per_env(self, name: str, value: Any) -> list[Any]:
        """One option value per sub-env: a scalar is repeated, a sequence must have ``num_envs`` entries."""
        if value is None or isinstance(value, (str, int, np.integer)):
            return [value] * self.num_envs
        values = list(value)
        if len(values) != self.num_envs:
            raise ValueError(
                f"options[{name!r}] must be one value or a sequence of num_envs={self.num_envs}; got {len(values)}."
            )
        return values

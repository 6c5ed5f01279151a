"""``PromptLoop-v0``: rewrite the prompt of a frozen text-to-image diffusion model while it samples."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from promptloop_env.backbones.base import Trajectory
from promptloop_env.config import PromptLoopConfig, arguments_doc
from promptloop_env.core import Episode, PromptLoopCore
from promptloop_env.spaces import PROMPT_CHARSET
from promptloop_env.validators import RENDER_MODES, check_action, check_render_mode, check_reset_options


def _from_core(name: str) -> property:
    """A read-only attribute of the env that is its core's attribute ``name``."""
    return property(lambda env: getattr(env.core, name), doc=f"The core's ``{name}`` (see :class:`PromptLoopCore`).")


class PromptLoopEnv(gym.Env[dict, str]):
    """Rewrite the prompt of a frozen text-to-image diffusion model during sampling.

    ## Description

    One episode is one sampling run of a diffusers pipeline (the *backbone*) for one user query and one
    noise seed (PromptLoop, arXiv 2510.00430). The denoising steps are split into ``num_refinements``
    segments. Before each segment the agent sees the model's current guess of the final image (the
    decoded x0 / Tweedie estimate of the current latent) and writes the complete prompt that conditions
    the model until its next action. The reward is computed once, on the final image, against the
    user's original query, never against the prompts the agent wrote.

    ## Action Space

    ``Text(max_length=1000, charset=PROMPT_CHARSET)``: the complete prompt (not an edit). Any ``str`` is
    accepted, including the empty prompt and characters outside the charset; a non-``str`` raises
    ``TypeError``. A prompt longer than the text encoder's window is truncated as diffusers truncates it,
    and ``info["prompt_truncated"]`` is True (and the first time, one ``logging`` warning says so).

    ## Observation Space

    ``Dict`` with:

    | key | space | meaning |
    |---|---|---|
    | ``image`` | ``Box(0, 255, (S, S, 3), uint8)``, S = preview_size | preview of the x0 estimate (at reset: x_T) |
    | ``query`` | ``Text`` | the user's original query |
    | ``prompt`` | ``Text`` | the prompt now in force (at reset: the query) |

    ``query`` and ``prompt`` always lie inside their ``Text(max_length=1000, charset=PROMPT_CHARSET)`` space:
    accents and typography become ASCII, other characters ``?``, and the text is cut at 1000 characters
    (:func:`~promptloop_env.spaces.fit_text`); ``info`` has them in full.
    | ``segment`` | ``Discrete(num_refinements + 1)`` | how many actions have been taken |
    | ``timestep`` | ``Box(0, 1, (1,), float32)`` | fraction of the denoising steps done |

    ## Rewards

    0.0 until the terminal step, then ``reward(final_image, query)``. ``reward`` is a registered name
    (``promptloop_env.rewards.REWARDS``), a callable ``(images uint8 [B,H,W,3], queries) -> floats``, or a
    dict ``{name_or_callable: weight}`` whose weighted sum is the reward; None is a toy backbone's own world
    reward (``toy-shapes``: ``toy-fidelity``, ``toy-compose``: ``toy-compose``), and other backbones must name
    one. A toy reward of another world than the backbone's is an error, and a toy reward refuses (``ValueError``)
    an empty query or one its world cannot read, in ``prompts`` at construction and in ``options["query"]`` at
    reset, rather than score it.

    ## Starting State

    ``reset(seed=s)`` draws ``noise_seed`` from the env's own ``np_random`` (or takes
    ``options["noise_seed"]``), seeds a fresh ``torch.Generator(device)`` with it, and draws the starting
    latents exactly as the pipeline does. The query comes from ``options["query"]`` or is drawn from
    ``prompts``. With ``refine_schedule="random"`` the refinement points are redrawn here.

    ## Episode End

    ``terminated=True`` after the ``num_refinements``-th action, whose segment runs to the last denoising
    step. ``truncated`` is always False.

    ## Information

    ``query``, ``prompt``, ``prompts`` (history of actions), ``prompt_truncated``, ``timestep``,
    ``denoise_step``, ``refine_steps``, ``noise_seed``, ``guidance_scale``; on the terminal step also
    ``final_image`` (uint8 HxWx3) and ``reward_components`` (``{name: value}``).

    **Replay guarantee**: with every action equal to the query, ``final_image`` equals
    ``pipe(query, num_inference_steps=..., guidance_scale=info["guidance_scale"], negative_prompt=...,
    generator=torch.Generator(device).manual_seed(info["noise_seed"]), output_type="np")`` bit for bit
    on CPU (after ``(x * 255).round()``), in the same process and with the same ``torch`` thread count.

    ## Arguments

    ```python
    gym.make("PromptLoop-v0", backbone="toy-shapes", reward=None, prompts=None, num_inference_steps=20,
             num_refinements=5, refine_schedule="uniform", preview="vae", preview_size=256, render_mode=None)
    ```

    ``render_mode`` (None or ``"rgb_array"``: ``render()`` returns the latest preview), ``config`` (a
    :class:`~promptloop_env.config.PromptLoopConfig`, whose fields the keywords replace) and the fields of
    :class:`~promptloop_env.config.PromptLoopConfig`, declared there once:

    {arguments}

    ``cpu_offload=True`` needs an accelerator: without one (or with ``device="cpu"``) it raises a ``ValueError``.

    The validated configuration, backbone, reward, preview and schedule live in ``self.core``
    (:class:`~promptloop_env.core.PromptLoopCore`, which the batched vector env holds too); ``backbone``,
    ``reward_fn``, ``queries``, ``guidance_scale`` and the other settings are read-only views of it.

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 2}

    backbone = _from_core("backbone")
    reward_fn = _from_core("reward_fn")
    queries = _from_core("queries")
    num_inference_steps = _from_core("num_inference_steps")
    num_refinements = _from_core("num_refinements")
    refine_schedule = _from_core("refine_schedule")
    guidance_scale = _from_core("guidance_scale")
    negative_prompt = _from_core("negative_prompt")
    preview = _from_core("preview")
    preview_size = _from_core("preview_size")

    def __init__(self, render_mode: str | None = None, config: PromptLoopConfig | None = None, **kwargs: Any) -> None:
        self.render_mode = check_render_mode(render_mode)
        self.core = PromptLoopCore(config, **kwargs)
        self.action_space = self.core.action_space
        self.observation_space = self.core.observation_space
        self._episode: Episode | None = None

    # -- Gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = check_reset_options(options)
        (self._episode,) = self.core.start([self.np_random], [options.get("query")], [options.get("noise_seed")])
        return self.core.observation(self._episode), self.core.info(self._episode)

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        check_action(action)
        if self._episode is None:
            raise RuntimeError("Call reset() before step().")
        if self._episode.terminated:
            raise RuntimeError("The episode has terminated: call reset() before step().")
        (reward,) = self.core.advance([self._episode], [action])
        episode = self._episode
        return self.core.observation(episode), float(reward), episode.terminated, False, self.core.info(episode)

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return None if self._episode is None else self._episode.image.copy()
        return None

    def close(self) -> None:
        # The backbone's weights are shared with other envs: drop our references, free nothing shared.
        self._episode = None

    @property
    def _traj(self) -> Trajectory | None:
        """The running episode's sampling run (None before ``reset`` and after ``close``)."""
        return None if self._episode is None else self._episode.traj


PromptLoopEnv.__doc__ = (PromptLoopEnv.__doc__ or "").replace("    {arguments}", arguments_doc("    "))

__all__ = ["PROMPT_CHARSET", "PromptLoopEnv"]

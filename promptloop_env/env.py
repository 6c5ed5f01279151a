"""``PromptLoop-v0``: rewrite the prompt of a frozen text-to-image diffusion model while it samples."""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from promptloop_env.backbones import load_backbone
from promptloop_env.backbones.base import Trajectory
from promptloop_env.episode import (
    Episode,
    PromptText,
    advance_episodes,
    check_action,
    check_int,
    check_reset_options,
    episode_info,
    episode_observation,
    start_episodes,
)
from promptloop_env.previews import make_preview
from promptloop_env.prompts import resolve_prompts
from promptloop_env.rewards import RewardSpec, make_reward
from promptloop_env.schedule import validate_schedule

PROMPT_CHARSET = frozenset(string.ascii_letters + string.digits + string.punctuation + " ")
"""Characters of the ``Text`` spaces: letters, digits, ASCII punctuation and the space (95 in all)."""

MAX_PROMPT_CHARS = 1000
"""``max_length`` of the ``Text`` spaces. Longer strings are still accepted as actions."""


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
    and ``info["prompt_truncated"]`` is True.

    ## Observation Space

    ``Dict`` with:

    | key | space | meaning |
    |---|---|---|
    | ``image`` | ``Box(0, 255, (S, S, 3), uint8)``, S = preview_size | preview of the x0 estimate (at reset: x_T) |
    | ``query`` | ``Text`` | the user's original query |
    | ``prompt`` | ``Text`` | the prompt now in force (at reset: the query) |
    | ``segment`` | ``Discrete(num_refinements + 1)`` | how many actions have been taken |
    | ``timestep`` | ``Box(0, 1, (1,), float32)`` | fraction of the denoising steps done |

    ## Rewards

    0.0 until the terminal step, then ``reward(final_image, query)``. ``reward`` is a registered name
    (``promptloop_env.rewards.REWARDS``), a callable ``(images uint8 [B,H,W,3], queries) -> floats``, or a
    dict ``{name_or_callable: weight}`` whose weighted sum is the reward.

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
    gym.make("PromptLoop-v0", backbone="toy-shapes", reward="toy-fidelity", prompts=None,
             num_inference_steps=20, num_refinements=5, refine_schedule="uniform",
             guidance_scale=None, negative_prompt=None, preview="vae", preview_size=256,
             device=None, torch_dtype=None, render_mode=None)
    ```

    * ``backbone``: registry name (``promptloop_env.backbones.BACKBONES``), local folder or hub id of a
      diffusers pipeline, or a loaded pipeline (weights are shared between envs).
    * ``reward``: see Rewards.
    * ``prompts``: list of queries, the name of a built-in set, or None (the backbone's default set).
    * ``num_inference_steps``: denoising steps per episode.
    * ``num_refinements``: actions per episode (N_R).
    * ``refine_schedule``: ``"uniform"`` (evenly spaced), ``"random"`` (redrawn every episode), or an
      explicit strictly increasing list of ``num_refinements`` step indices starting at 0.
    * ``guidance_scale``: classifier-free guidance; None means the backbone's usual default.
    * ``negative_prompt``: as in diffusers.
    * ``preview``: ``"vae"``, ``"taesd"``, ``"latent_rgb"`` or ``"none"``; ``taesd`` optionally names the
      ``AutoencoderTiny`` to use.
    * ``preview_size``: side of the preview image.
    * ``device``, ``torch_dtype``: where and in which precision the backbone runs.
    * ``local_files_only``: forwarded to ``from_pretrained``.

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        backbone: Any = "toy-shapes",
        reward: RewardSpec = "toy-fidelity",
        prompts: Sequence[str] | str | None = None,
        num_inference_steps: int = 20,
        num_refinements: int = 5,
        refine_schedule: str | Sequence[int] = "uniform",
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        preview: str = "vae",
        preview_size: int = 256,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | str | None = None,
        render_mode: str | None = None,
        taesd: Any = None,
        local_files_only: bool = False,
    ) -> None:
        check_int("num_inference_steps", num_inference_steps, 1)
        check_int("num_refinements", num_refinements, 1)
        check_int("preview_size", preview_size, 8)
        if num_refinements > num_inference_steps:
            raise ValueError(
                f"num_refinements={num_refinements} exceeds num_inference_steps={num_inference_steps}: each "
                "action needs at least one denoising step."
            )
        self.refine_schedule = validate_schedule(refine_schedule, num_inference_steps, num_refinements)
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise TypeError(f"negative_prompt must be a str or None; got {type(negative_prompt).__name__}.")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array'; got {render_mode!r}.")
        if isinstance(torch_dtype, str):
            torch_dtype = getattr(torch, torch_dtype.removeprefix("torch."))
        self.backbone = load_backbone(
            backbone, device=device, torch_dtype=torch_dtype, local_files_only=local_files_only
        )
        self.reward_fn = make_reward(reward, device=self.backbone.device, torch_dtype=torch_dtype)
        self.queries = resolve_prompts(prompts, self.backbone.default_prompts)
        self.num_inference_steps = num_inference_steps
        self.num_refinements = num_refinements
        self.guidance_scale = self.backbone.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        self.negative_prompt = negative_prompt
        self.preview = preview
        self.preview_size = preview_size
        self.render_mode = render_mode
        self._preview = make_preview(preview, self.backbone, preview_size, taesd, local_files_only)

        text = PromptText(max_length=MAX_PROMPT_CHARS, min_length=0, charset=PROMPT_CHARSET)
        self.action_space = text
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (preview_size, preview_size, 3), np.uint8),
                "query": text,
                "prompt": text,
                "segment": spaces.Discrete(num_refinements + 1),
                "timestep": spaces.Box(0.0, 1.0, (1,), np.float32),
            }
        )
        self._episode: Episode | None = None
        self._closed = False

    # -- Gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = check_reset_options(options)
        (self._episode,) = start_episodes(self, [self.np_random], [options.get("query")], [options.get("noise_seed")])
        return episode_observation(self._episode), episode_info(self, self._episode)

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        check_action(action)
        if self._episode is None:
            raise RuntimeError("Call reset() before step().")
        if self._episode.segment >= self.num_refinements:
            raise RuntimeError("The episode has terminated: call reset() before step().")
        rewards, extras = advance_episodes(self, [self._episode], [action])
        terminated = self._episode.segment == self.num_refinements
        info = {**episode_info(self, self._episode), **extras[0]}
        return episode_observation(self._episode), float(rewards[0]), terminated, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return None if self._episode is None else self._episode.image.copy()
        return None

    def close(self) -> None:
        # The backbone's weights are shared with other envs: drop our references, free nothing shared.
        self._episode = None
        self._closed = True

    @property
    def _traj(self) -> Trajectory | None:
        """The running episode's sampling run (None before ``reset`` and after ``close``)."""
        return None if self._episode is None else self._episode.traj

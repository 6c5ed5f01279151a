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
from promptloop_env.backbones.base import to_uint8
from promptloop_env.previews import make_preview
from promptloop_env.prompts import resolve_prompts
from promptloop_env.rewards import RewardSpec, make_reward
from promptloop_env.schedule import refinement_steps, validate_schedule

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
    | ``image`` | ``Box(0, 255, (preview_size, preview_size, 3), uint8)`` | preview of the x0 estimate (at reset: of the starting latent) |
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
        _check_int("num_inference_steps", num_inference_steps, 1)
        _check_int("num_refinements", num_refinements, 1)
        _check_int("preview_size", preview_size, 8)
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
        self.backbone = load_backbone(backbone, device=device, torch_dtype=torch_dtype, local_files_only=local_files_only)
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

        text = spaces.Text(max_length=MAX_PROMPT_CHARS, min_length=0, charset=PROMPT_CHARSET)
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
        self._traj = None
        self._closed = False

    # -- Gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"query", "noise_seed"}
        if unknown:
            raise ValueError(f"Unknown reset options {sorted(unknown)}; valid: 'query', 'noise_seed'.")
        query = options.get("query")
        if query is None:
            if not self.queries:
                raise ValueError("No query: pass options={'query': ...} or give the env prompts=[...].")
            query = self.queries[int(self.np_random.integers(len(self.queries)))]
        if not isinstance(query, str):
            raise TypeError(f"options['query'] must be a str; got {type(query).__name__}.")
        noise_seed = options.get("noise_seed")
        if noise_seed is None:
            noise_seed = int(self.np_random.integers(0, 2**63 - 1))
        _check_int("options['noise_seed']", noise_seed, 0)
        self._steps = refinement_steps(self.refine_schedule, self.num_inference_steps, self.num_refinements, self.np_random)
        self._traj = self.backbone.start(noise_seed, self.num_inference_steps, self.guidance_scale, self.negative_prompt)
        self._query = query
        self._prompt = query
        self._history: list[str] = []
        self._last_truncated = False
        self._segment = 0
        self._image = self._preview(self._traj.latents)[0]
        return self._observation(), self._info()

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        if not isinstance(action, str):
            raise TypeError(
                f"The action must be a str (the complete prompt); got {type(action).__name__}: {action!r:.80}."
            )
        if self._traj is None:
            raise RuntimeError("Call reset() before step().")
        if self._segment >= self.num_refinements:
            raise RuntimeError("The episode has terminated: call reset() before step().")
        embedding, truncated = self.backbone.encode(action)
        end = self._steps[self._segment + 1] if self._segment + 1 < self.num_refinements else self._traj.num_steps
        self.backbone.denoise([self._traj], [embedding], [end - self._traj.step])
        self._prompt = action
        self._history.append(action)
        self._last_truncated = truncated
        self._segment += 1
        terminated = self._segment == self.num_refinements
        info_extra: dict[str, Any] = {}
        reward = 0.0
        if terminated:
            final = to_uint8(self.backbone.decode(self._traj.latents, self._traj.generator))
            components = self.reward_fn.components(final, [self._query])
            reward = float(self.reward_fn.combine(components)[0])
            info_extra = {"final_image": final[0], "reward_components": {k: float(v[0]) for k, v in components.items()}}
            self._image = _resize_like(final, self) if self.preview == "vae" else self._preview(self._traj.latents)[0]
        else:
            self._image = self._preview(self._traj.x0)[0]
        return self._observation(), reward, terminated, False, {**self._info(), **info_extra}

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return None if self._traj is None else self._image.copy()
        return None

    def close(self) -> None:
        # The backbone's weights are shared with other envs: drop our references, free nothing shared.
        self._traj = None
        self._closed = True

    # -- helpers ------------------------------------------------------------------------------------
    def _observation(self) -> dict[str, Any]:
        done = self._traj.step / self._traj.num_steps
        return {
            "image": self._image,
            "query": self._query,
            "prompt": self._prompt,
            "segment": self._segment,
            "timestep": np.array([done], dtype=np.float32),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "query": self._query,
            "prompt": self._prompt,
            "prompts": list(self._history),
            "prompt_truncated": self._last_truncated,
            "timestep": self._traj.step / self._traj.num_steps,
            "denoise_step": self._traj.step,
            "refine_steps": list(self._steps),
            "noise_seed": self._traj.seed,
            "guidance_scale": self.guidance_scale,
        }


def _resize_like(final: np.ndarray, env: PromptLoopEnv) -> np.ndarray:
    from promptloop_env.previews import resize_images

    return resize_images(torch.from_numpy(final).permute(0, 3, 1, 2).float() / 255.0, env.preview_size)[0]


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}.")

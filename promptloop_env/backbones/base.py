"""The backbone interface: a diffusers pipeline's denoising loop, split into the phases the env needs.

A backbone wraps one loaded diffusers pipeline and reuses its own components and helpers
(``encode_prompt``, ``retrieve_timesteps``, the VAE and image processor), so that an episode whose
actions all equal the query replays ``pipe(query, generator=torch.Generator(device).manual_seed(seed))``
bit for bit. The phases are:

1. ``encode(prompt)``: text embeddings, cached so a repeated prompt is not re-encoded.
2. ``start(seed, ...)``: a :class:`Trajectory` with its own scheduler object, generator and starting latents.
3. ``denoise(trajectories, embeddings, num_steps)``: advance many trajectories together, one batched
   model call per denoising step (classifier-free guidance included), each trajectory stepping its own
   scheduler. Trajectories may sit at different steps and advance by different counts.
4. ``decode(latents)``: the pipeline's own VAE decode and post-processing, as ``float32 [B, H, W, 3]`` in [0, 1].

Weights are shared between every env that uses the backbone; schedulers and generators never are.
Families differ only in how they encode prompts, prepare latents and call their denoiser; that is what
subclasses of :class:`DiffusersBackbone` override. Each family class also declares its own facts (the diffusers
pipeline class it runs, its tiny autoencoder and its default guidance scale; its latent-to-RGB map is the
community's, in ``latent_rgb.json`` beside this module) and registers itself in :data:`FAMILIES` with
:func:`register_family`.

>>> from promptloop_env.backbones.tiny import tiny_stable_diffusion_pipeline
>>> backbone = FAMILIES["sd"](tiny_stable_diffusion_pipeline())
>>> embedding, truncated = backbone.encode("a red circle")
>>> traj = backbone.start(seed=0, num_inference_steps=4, guidance_scale=2.0)
>>> backbone.denoise([traj], [embedding], [4])
>>> traj.done, backbone.decode(traj.latents).shape
(True, (1, 64, 64, 3))
"""

from __future__ import annotations

import functools
import inspect
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

from promptloop_env.logs import quiet_loggers
from promptloop_env.registry import Registry

PromptEmbedding = dict[str, torch.Tensor]
"""Family-specific text conditioning for one prompt, batch dimension 1 (e.g. ``{"prompt_embeds": ...}``)."""


@dataclass(frozen=True)
class LatentRGB:
    """A linear map from model-space latents (what the sampler holds) to RGB in [-1, 1], for previews.

    ``rgb = einsum("bchw,cr->brhw", latents, factors) + bias``: one row of ``factors`` per latent channel. Each
    family declares the approximation the community uses for live previews (e.g. ComfyUI's latent formats); a
    backbone folder may carry its own fitted map as ``latent_rgb.json`` (``{"factors": ..., "bias": ...}``).

    >>> LatentRGB(((1.0, 0.0, 0.0),)).to_rgb(torch.ones(1, 1, 2, 2))[0, :, 0, 0].tolist()
    [1.0, 0.0, 0.0]
    """

    factors: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def for_family(cls, family: str) -> LatentRGB | None:
        """The community's map for a pipeline family (``latent_rgb.json`` beside this module), or None.

        >>> len(LatentRGB.for_family("sd3").factors), LatentRGB.for_family("my-family")
        (16, None)
        """
        coefficients = _community_latent_rgb().get(family)
        return cls.from_dict(coefficients) if coefficients is not None else None

    @classmethod
    def from_dict(cls, coefficients: Mapping[str, Any]) -> LatentRGB:
        """From ``{"factors": rows, "bias": rgb}`` (``bias`` optional; other keys ignored)."""
        factors = tuple(tuple(float(v) for v in row) for row in coefficients["factors"])
        bias = tuple(float(v) for v in coefficients.get("bias", (0.0, 0.0, 0.0)))
        return cls(factors, bias)  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, path: str | Path) -> LatentRGB:
        """From a ``latent_rgb.json`` file."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_rgb(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w]`` latents to ``float32 [B, 3, h, w]`` RGB in [-1, 1] (not clamped)."""
        weight = torch.as_tensor(self.factors, dtype=torch.float32, device=latents.device)
        offset = torch.as_tensor(self.bias, dtype=torch.float32, device=latents.device)
        if weight.shape[0] != latents.shape[1]:
            raise ValueError(
                f"latent_rgb factors have {weight.shape[0]} rows but latents have {latents.shape[1]} channels."
            )
        return torch.einsum("bchw,cr->brhw", latents.float(), weight) + offset.view(1, 3, 1, 1)


@functools.cache
def _community_latent_rgb() -> dict[str, Any]:
    return json.loads(Path(__file__).with_name("latent_rgb.json").read_text(encoding="utf-8"))


StateT = TypeVar("StateT")


@dataclass
class Trajectory(Generic[StateT]):
    """The whole state of one sampling run: resumable at any step.

    Attributes:
        seed: the integer seed of ``generator`` (the episode's ``noise_seed``).
        generator: the torch generator that drew the starting latents and any sampler noise.
        scheduler: this trajectory's own scheduler object (multistep history lives here).
        timesteps: the scheduler's timesteps for this run.
        latents: the current latents ``x_t``, batch dimension 1, in the pipeline's own layout.
        guidance_scale: classifier-free guidance weight.
        negative: embedding of the negative prompt (used when guidance is on).
        state: the family's own per-run state, a dataclass of the family (e.g. image ids, step kwargs), or None.
        step: number of denoising steps done.
        x0: the latest estimate of the clean latents (Tweedie / x0-prediction), or None before any step.
    """

    seed: int
    generator: torch.Generator
    scheduler: Any
    timesteps: torch.Tensor
    latents: torch.Tensor
    guidance_scale: float
    negative: PromptEmbedding | None
    state: StateT
    step: int = 0
    x0: torch.Tensor | None = None

    @property
    def num_steps(self) -> int:
        """Total number of denoising steps (model calls) of this run."""
        return len(self.timesteps)

    @property
    def done(self) -> bool:
        return self.step >= self.num_steps


def cat_embeddings(embeddings: Sequence[PromptEmbedding]) -> PromptEmbedding:
    """Concatenate per-prompt embeddings along the batch dimension, key by key."""
    return {key: torch.cat([e[key] for e in embeddings]) for key in embeddings[0]}


class DiffusersBackbone:
    """Shared machinery of the backbones; one subclass per pipeline family.

    A family class declares its facts as class attributes: ``family`` (its name), ``pipeline_class`` (the
    diffusers pipeline class it runs, subclasses included), ``default_taesd`` (hub id of its ``AutoencoderTiny``),
    ``default_guidance_scale`` (its pipeline's ``__call__`` default) and, for a family without a community map in
    ``latent_rgb.json``, ``default_latent_rgb`` (its :class:`LatentRGB`); it implements the phases and is
    decorated with :func:`register_family`.

    Args:
        pipe: a loaded diffusers pipeline of the family.
        default_guidance_scale: what ``guidance_scale=None`` means for this backbone; None keeps the family's.
        taesd: hub id or folder of the tiny autoencoder of ``preview="taesd"``; None keeps the family's.
        latent_rgb: the map of ``preview="latent_rgb"`` (a :class:`LatentRGB` or its dict); None keeps the family's.
        default_prompts: name of the built-in prompt set used when the env gets ``prompts=None``.
        default_reward: the reward ``reward=None`` means (a toy world's own); None: the env must be given one.
        world: the toy world this model draws, whose rewards alone can read its images (None: any reward).
        name: what the backbone was asked by (registry name, folder or hub id), for messages.
        cache_size: how many prompt embeddings to keep.
        cpu_offload: call the pipeline's ``enable_model_cpu_offload()`` (needs an accelerator and ``accelerate``):
            each model sits on the CPU until its turn, for checkpoints larger than the accelerator's memory.
    """

    family: ClassVar[str]
    pipeline_class: ClassVar[type]
    default_latent_rgb: ClassVar[LatentRGB | None] = None
    default_taesd: ClassVar[str | None] = None
    default_guidance_scale: float

    def __init__(
        self,
        pipe: Any,
        default_guidance_scale: float | None = None,
        taesd: str | None = None,
        latent_rgb: LatentRGB | Mapping[str, Any] | None = None,
        default_prompts: str | None = None,
        default_reward: str | None = None,
        world: str | None = None,
        name: str | None = None,
        cache_size: int = 512,
        cpu_offload: bool = False,
    ) -> None:
        if cpu_offload:
            pipe.enable_model_cpu_offload()
        self.pipe = pipe
        self._device: torch.device | None = None
        if default_guidance_scale is not None:
            self.default_guidance_scale = float(default_guidance_scale)
        self.taesd = taesd or self.default_taesd
        if latent_rgb is not None and not isinstance(latent_rgb, LatentRGB):
            latent_rgb = LatentRGB.from_dict(latent_rgb)
        self.latent_rgb = latent_rgb or self.default_latent_rgb or LatentRGB.for_family(self.family)
        self.default_prompts = default_prompts
        self.default_reward = default_reward
        self.world = world
        self.name = name
        self._cache: OrderedDict[str, tuple[PromptEmbedding, bool]] = OrderedDict()
        self._cache_size = cache_size
        step_params = set(inspect.signature(pipe.scheduler.step).parameters)
        self._step_accepts_generator = "generator" in step_params
        self._step_accepts_eta = "eta" in step_params

    # -- properties ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        # diffusers' ``_execution_device`` walks every module (~14 ms on CPU); it is read several times per
        # episode, so it is resolved once. Move the pipeline before wrapping it (``device=`` at make time).
        if self._device is None:
            self._device = self.pipe._execution_device
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    @property
    def denoiser(self) -> torch.nn.Module:
        # Transformer pipelines (SD3, FLUX) name it transformer, UNet pipelines unet.
        return self.pipe.transformer if hasattr(self.pipe, "transformer") else self.pipe.unet

    @property
    def vae(self) -> torch.nn.Module:
        return self.pipe.vae

    @property
    def image_size(self) -> tuple[int, int]:
        """Default (height, width) of the pipeline's output, as its ``__call__`` computes it."""
        # SDXL, SD3 and FLUX pipelines keep default_sample_size; StableDiffusionPipeline reads its UNet's config.
        sample = getattr(self.pipe, "default_sample_size", None) or self.pipe.unet.config.sample_size
        return sample * self.pipe.vae_scale_factor, sample * self.pipe.vae_scale_factor

    # -- 1. prompts ---------------------------------------------------------------------------------
    def encode(self, prompt: str) -> tuple[PromptEmbedding, bool]:
        """Embeddings of ``prompt`` and whether a text encoder truncated it; cached (LRU)."""
        hit = self._cache.get(prompt)
        if hit is not None:
            self._cache.move_to_end(prompt)
            return hit
        # diffusers logs the cut part of a long prompt at every call; the env reports it in info instead.
        with torch.inference_mode(), quiet_loggers():
            value = (self._encode(prompt), self.is_truncated(prompt))
        self._cache[prompt] = value
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value

    def encode_negative(self, negative_prompt: str | None) -> PromptEmbedding:
        """The unconditional embedding used under guidance (``None`` = the pipeline's own default)."""
        key = "\x00negative\x00" + (negative_prompt if negative_prompt is not None else "\x00none")
        hit = self._cache.get(key)
        if hit is None:
            with torch.inference_mode():
                hit = (self._encode_negative(negative_prompt), False)
            self._cache[key] = hit
        return hit[0]

    def _encode(self, prompt: str) -> PromptEmbedding:
        raise NotImplementedError

    def _encode_negative(self, negative_prompt: str | None) -> PromptEmbedding:
        return self._encode(negative_prompt or "")

    def is_truncated(self, prompt: str) -> bool:
        """True when the prompt is longer than a text encoder's window (diffusers cuts it there)."""
        tokenizer = self.pipe.tokenizer
        return len(tokenizer(prompt, truncation=False, verbose=False).input_ids) > tokenizer.model_max_length

    # -- 2. trajectories ----------------------------------------------------------------------------
    def does_guidance(self, guidance_scale: float) -> bool:
        """Whether the pipeline would run classifier-free guidance at this scale."""
        return guidance_scale > 1.0

    def new_scheduler(self) -> Any:
        """A fresh scheduler object with the pipeline's configuration (never shared between trajectories)."""
        scheduler = self.pipe.scheduler
        return type(scheduler).from_config(scheduler.config)

    def resolve_guidance(self, guidance_scale: float | None) -> float:
        """``guidance_scale`` as a float; None means this backbone's default."""
        return self.default_guidance_scale if guidance_scale is None else float(guidance_scale)

    def start(
        self,
        seed: int,
        num_inference_steps: int,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
    ) -> Trajectory:
        """Begin a run: a fresh scheduler, a generator seeded with ``seed`` and the starting latents."""
        guidance_scale = self.resolve_guidance(guidance_scale)
        generator = torch.Generator(self.device).manual_seed(int(seed))
        scheduler = self.new_scheduler()
        timesteps, latents, state = self._prepare(scheduler, generator, num_inference_steps, guidance_scale)
        negative = self._negative(negative_prompt, guidance_scale)
        return Trajectory(seed, generator, scheduler, timesteps, latents, guidance_scale, negative, state)

    def _prepare(
        self, scheduler: Any, generator: torch.Generator, num_inference_steps: int, guidance_scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """The family's part of :meth:`start`: timesteps, starting latents and family state, as its pipeline."""
        raise NotImplementedError

    def _negative(self, negative_prompt: str | None, guidance_scale: float) -> PromptEmbedding | None:
        """The unconditional embedding of a run, when its guidance needs one."""
        return self.encode_negative(negative_prompt) if self.does_guidance(guidance_scale) else None

    def _step_kwargs(self, generator: torch.Generator, eta: float = 0.0) -> dict[str, Any]:
        """The extra arguments of ``scheduler.step`` that this scheduler accepts, as the pipelines pass them."""
        kwargs: dict[str, Any] = {}
        if self._step_accepts_eta:
            kwargs["eta"] = eta
        if self._step_accepts_generator:
            kwargs["generator"] = generator
        return kwargs

    # -- 3. denoising -------------------------------------------------------------------------------
    @torch.inference_mode()
    def denoise(
        self,
        trajectories: Sequence[Trajectory],
        embeddings: Sequence[PromptEmbedding],
        num_steps: Sequence[int],
    ) -> None:
        """Advance each trajectory by its ``num_steps`` with its embedding, batching the model calls.

        At every iteration the trajectories that still have steps to do form one batch: one denoiser call
        (conditional and unconditional halves together under guidance), then each trajectory's own
        ``scheduler.step``. The x0 estimate is kept after each trajectory's last step of the call.
        """
        if not (len(trajectories) == len(embeddings) == len(num_steps)):
            raise ValueError("denoise needs one embedding and one step count per trajectory.")
        for traj, n in zip(trajectories, num_steps):
            if n < 0 or traj.step + n > traj.num_steps:
                raise ValueError(f"Cannot advance a trajectory at step {traj.step} by {n} of {traj.num_steps}.")
        for k in range(max(num_steps, default=0)):
            active = [j for j, n in enumerate(num_steps) if k < n]
            trajs = [trajectories[j] for j in active]
            guided = {self.does_guidance(t.guidance_scale) for t in trajs}
            for flag in sorted(guided):
                group = [j for j in active if self.does_guidance(trajectories[j].guidance_scale) == flag]
                self._step_batch(
                    [trajectories[j] for j in group],
                    [embeddings[j] for j in group],
                    want_x0=[k == num_steps[j] - 1 for j in group],
                    guided=flag,
                )

    def _step_batch(
        self, trajs: list[Trajectory], embeddings: list[PromptEmbedding], want_x0: list[bool], guided: bool
    ) -> None:
        """One denoising step for trajectories that all use guidance, or all do not."""
        raise NotImplementedError

    # -- 4. decoding --------------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        """The pipeline's own VAE decode and post-processing: ``float32 [B, H, W, 3]`` in [0, 1]."""
        raise NotImplementedError

    def to_spatial(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents as ``[B, C, h, w]`` in model space (unpacks packed layouts such as FLUX's)."""
        return latents


FAMILIES: Registry[type[DiffusersBackbone]] = Registry("backbone family", discover=__package__, quiet=True)
"""The registered backbone families, by name (``"sd"``, ``"sdxl"``, ``"sd3"``, ``"flux"``).

Reading it the first time imports every module of :mod:`promptloop_env.backbones` (the family modules import
diffusers' pipelines, so they are not imported with ``promptloop_env``): a new family is one module of that
package, or any module that applies :func:`register_family` before the env is made.
"""

BackboneT = TypeVar("BackboneT", bound=type[DiffusersBackbone])


def register_family(cls: BackboneT) -> BackboneT:
    """Class decorator: register a backbone family in :data:`FAMILIES` under its ``family`` name."""
    return FAMILIES.register(cls.family, cls)


def exceeds_window(tokenizer: Any, prompt: str, max_length: int | None = None) -> bool:
    """Whether ``prompt`` has more tokens (special ones included) than the window diffusers pads it to."""
    window = tokenizer.model_max_length if max_length is None else max_length
    return len(tokenizer(prompt, truncation=False, verbose=False).input_ids) > window


def to_uint8(images: np.ndarray) -> np.ndarray:
    """``float [B, H, W, 3]`` in [0, 1] to ``uint8``, rounding as diffusers' ``numpy_to_pil`` does."""
    return (images * 255).round().astype(np.uint8)

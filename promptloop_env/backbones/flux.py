"""Backbone for the ``FluxPipeline`` family (FLUX.1-dev, FLUX.1-schnell and fine-tunes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import FluxPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

from promptloop_env.backbones.base import (
    DiffusersBackbone,
    PromptEmbedding,
    Trajectory,
    exceeds_window,
    register_family,
)
from promptloop_env.backbones.batching import ConditioningCache, batch_timesteps, flow_match_step, guide


@dataclass
class FluxState:
    """Per-run state of the FLUX family.

    Attributes:
        image_ids: the packed latents' position ids, from the pipeline's ``prepare_latents``.
        text_ids: the text tokens' position ids (zeros, as the pipeline's).
        guidance: FLUX.1-dev's guidance embedding input, ``[1]``; None for models without one (schnell).
    """

    image_ids: torch.Tensor
    text_ids: torch.Tensor
    guidance: torch.Tensor | None


@register_family
class FluxBackbone(DiffusersBackbone):
    """The flow-matching transformer loop of ``FluxPipeline.__call__``, in resumable phases.

    Latents live packed, as the pipeline holds them: ``[1, (h/2)*(w/2), 4*C]`` tokens with their latent image
    ids; :meth:`to_spatial` unpacks them for previews. A prompt is CLIP's pooled output plus T5's token
    embeddings (``pipe.encode_prompt``). ``guidance_scale`` is FLUX.1-dev's distilled *guidance embedding*, not
    classifier-free guidance (FLUX.1-schnell has no such embedding and ignores it); the timesteps are the
    pipeline's ``linspace(1, 1/n, n)`` sigmas shifted by ``mu = calculate_shift(image tokens)``. The x0 estimate is
    ``x_t - sigma_t * v``.

    The pipeline's "true CFG" (``true_cfg_scale > 1`` with a ``negative_prompt``) is available as the
    ``true_cfg_scale`` option: as in the pipeline, the unconditional pass is a second model call.

    Args:
        pipe: a loaded ``FluxPipeline``.
        max_sequence_length: T5 tokens, as the pipeline's argument of the same name.
        true_cfg_scale: as the pipeline's argument of the same name (1.0: off).
        **kwargs: see :class:`~promptloop_env.backbones.base.DiffusersBackbone`.

    >>> from promptloop_env.backbones.tiny import tiny_flux_pipeline
    >>> backbone = FluxBackbone(tiny_flux_pipeline())
    >>> traj = backbone.start(seed=0, num_inference_steps=2)
    >>> backbone.denoise([traj], [backbone.encode("a red circle")[0]], [2])
    >>> traj.latents.shape, backbone.to_spatial(traj.latents).shape, backbone.decode(traj.latents).shape
    (torch.Size([1, 64, 64]), torch.Size([1, 16, 16, 16]), (1, 64, 64, 3))
    """

    family = "flux"
    pipeline_class = FluxPipeline
    default_taesd = "madebyollin/taef1"
    default_guidance_scale = 3.5  # FluxPipeline.__call__'s default

    def __init__(self, pipe: Any, max_sequence_length: int = 512, true_cfg_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(pipe, **kwargs)
        self.max_sequence_length = max_sequence_length
        self.true_cfg_scale = float(true_cfg_scale)
        self._conditioning = ConditioningCache()
        self._negative_conditioning = ConditioningCache()

    def _encode(self, prompt: str) -> PromptEmbedding:
        embeds, pooled, _ = self.pipe.encode_prompt(
            prompt, None, device=self.device, num_images_per_prompt=1, max_sequence_length=self.max_sequence_length
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def is_truncated(self, prompt: str) -> bool:
        pipe = self.pipe
        return exceeds_window(pipe.tokenizer, prompt, pipe.tokenizer_max_length) or exceeds_window(
            pipe.tokenizer_2, prompt, self.max_sequence_length
        )

    def does_guidance(self, guidance_scale: float) -> bool:
        # The guidance embedding is not classifier-free guidance: all trajectories share one batch.
        return False

    def _prepare(
        self, scheduler: Any, generator: torch.Generator, num_inference_steps: int, guidance_scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, FluxState]:
        pipe = self.pipe
        # 1. Packed starting latents and their image ids, from the pipeline's own prepare_latents.
        height, width = self.image_size
        dtype = pipe.text_encoder_2.dtype  # encode_prompt's dtype, which the pipeline gives the latents
        latents, image_ids = pipe.prepare_latents(
            1, pipe.transformer.config.in_channels // 4, height, width, dtype, self.device, generator
        )
        # 2. Sigmas shifted by the image-token count, as FluxPipeline.__call__ step 5.
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
        if getattr(scheduler.config, "use_flow_sigmas", False):
            sigmas = None
        mu = calculate_shift(
            latents.shape[1],
            scheduler.config.get("base_image_seq_len", 256),
            scheduler.config.get("max_image_seq_len", 4096),
            scheduler.config.get("base_shift", 0.5),
            scheduler.config.get("max_shift", 1.15),
        )
        timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, self.device, sigmas=sigmas, mu=mu)
        scheduler.set_begin_index(0)
        text_dtype = pipe.text_encoder.dtype if pipe.text_encoder is not None else pipe.transformer.dtype
        guidance = None
        if pipe.transformer.config.guidance_embeds:
            guidance = torch.full([1], guidance_scale, device=self.device, dtype=torch.float32)
        text_ids = torch.zeros(self.max_sequence_length, 3).to(device=self.device, dtype=text_dtype)
        return timesteps, latents, FluxState(image_ids, text_ids, guidance)

    def _negative(self, negative_prompt: str | None, guidance_scale: float) -> PromptEmbedding | None:
        # True CFG only with a negative prompt, as the pipeline's do_true_cfg.
        if self.true_cfg_scale > 1.0 and negative_prompt is not None:
            return self.encode(negative_prompt)[0]
        return None

    def _transformer(self, trajs: list[Trajectory[FluxState]], text: PromptEmbedding, context: str) -> torch.Tensor:
        ts = [traj.timesteps[traj.step] for traj in trajs]
        latents = torch.cat([traj.latents for traj in trajs])
        guidance = None if trajs[0].state.guidance is None else torch.cat([traj.state.guidance for traj in trajs])
        with self.pipe.transformer.cache_context(context):
            return self.pipe.transformer(
                hidden_states=latents,
                timestep=batch_timesteps(ts).to(latents.dtype) / 1000,
                guidance=guidance,
                pooled_projections=text["pooled_prompt_embeds"],
                encoder_hidden_states=text["prompt_embeds"],
                txt_ids=trajs[0].state.text_ids,
                img_ids=trajs[0].state.image_ids,
                joint_attention_kwargs={},
                return_dict=False,
            )[0]

    def _step_batch(
        self, trajs: list[Trajectory[FluxState]], embeddings: list[PromptEmbedding], want_x0: list[bool], guided: bool
    ) -> None:
        # 1. The conditional pass for every trajectory in one call.
        velocity = self._transformer(trajs, self._conditioning(embeddings), "cond")
        # 2. True CFG: a second call for the trajectories with a negative prompt, as the pipeline does.
        rows = [j for j, traj in enumerate(trajs) if traj.negative is not None]
        if rows:
            sub = [trajs[j] for j in rows]
            negative = self._transformer(sub, self._negative_conditioning([t.negative for t in sub]), "uncond")
            guided_rows = guide(negative, velocity[rows], [self.true_cfg_scale] * len(rows))
            velocity = velocity.clone()
            velocity[rows] = guided_rows
        # 3. Each trajectory's own Euler step.
        for j, traj in enumerate(trajs):
            flow_match_step(traj, velocity[j : j + 1], traj.timesteps[traj.step], want_x0[j])

    def to_spatial(self, latents: torch.Tensor) -> torch.Tensor:
        height, width = self.image_size
        return self.pipe._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        vae = self.pipe.vae
        latents = (self.to_spatial(latents) / vae.config.scaling_factor) + vae.config.shift_factor
        image = vae.decode(latents.to(vae.device, vae.dtype), return_dict=False)[0]
        return self.pipe.image_processor.postprocess(image, output_type="np")

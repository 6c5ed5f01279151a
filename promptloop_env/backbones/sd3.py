"""Backbone for the ``StableDiffusion3Pipeline`` family (SD3 medium, SD3.5 medium / large / large-turbo)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusion3Pipeline
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift, retrieve_timesteps

from promptloop_env.backbones.base import (
    DiffusersBackbone,
    PromptEmbedding,
    Trajectory,
    exceeds_window,
    register_family,
)
from promptloop_env.backbones.batching import (
    ConditioningCache,
    batch_timesteps,
    flow_match_step,
    guidance_parts,
    guide,
)


@register_family
class StableDiffusion3Backbone(DiffusersBackbone):
    """The MMDiT flow-matching loop of ``StableDiffusion3Pipeline.__call__``, in resumable phases.

    Prompts go through the pipeline's own ``encode_prompt``: CLIP-L and OpenCLIP-bigG hidden states side by side,
    padded to T5's width and followed by T5's tokens, plus both pooled projections. A pipeline loaded without T5
    (``text_encoder_3=None``, the usual memory saving) gets zeros in T5's place, exactly as diffusers does. The
    sampler is ``FlowMatchEulerDiscreteScheduler``; the x0 estimate is ``x_t - sigma_t * v``. Skip-layer guidance
    (the pipeline's ``skip_guidance_layers``) is not supported.

    Args:
        pipe: a loaded ``StableDiffusion3Pipeline``.
        max_sequence_length: T5 tokens, as the pipeline's argument of the same name.
        **kwargs: see :class:`~promptloop_env.backbones.base.DiffusersBackbone`.
    """

    family = "sd3"
    pipeline_class = StableDiffusion3Pipeline
    default_taesd = "madebyollin/taesd3"
    default_guidance_scale = 7.0  # StableDiffusion3Pipeline.__call__'s default

    def __init__(self, pipe: Any, max_sequence_length: int = 256, **kwargs: Any) -> None:
        super().__init__(pipe, **kwargs)
        self.max_sequence_length = max_sequence_length
        self._conditioning = ConditioningCache()

    def _encode(self, prompt: str) -> PromptEmbedding:
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt,
            None,
            None,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def _encode_negative(self, negative_prompt: str | None) -> PromptEmbedding:
        _, embeds, _, pooled = self.pipe.encode_prompt(
            "",
            None,
            None,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative_prompt,
            max_sequence_length=self.max_sequence_length,
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def is_truncated(self, prompt: str) -> bool:
        pipe = self.pipe
        windows = [(pipe.tokenizer, pipe.tokenizer_max_length), (pipe.tokenizer_2, pipe.tokenizer_max_length)]
        if pipe.text_encoder_3 is not None and pipe.tokenizer_3 is not None:
            windows.append((pipe.tokenizer_3, self.max_sequence_length))
        return any(exceeds_window(tok, prompt, n) for tok, n in windows if tok is not None)

    @property
    def _embed_dtype(self) -> torch.dtype:
        # CLIP parts come in text_encoder's dtype and T5's in text_encoder_3's; torch.cat promotes.
        pipe = self.pipe
        dtype = pipe.text_encoder.dtype if pipe.text_encoder is not None else pipe.transformer.dtype
        return torch.promote_types(dtype, pipe.text_encoder_3.dtype) if pipe.text_encoder_3 is not None else dtype

    def _prepare(
        self, scheduler: Any, generator: torch.Generator, num_inference_steps: int, guidance_scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        pipe = self.pipe
        # 1. Starting latents first (this pipeline draws them before setting the timesteps).
        height, width = self.image_size
        latents = pipe.prepare_latents(
            1, pipe.transformer.config.in_channels, height, width, self._embed_dtype, self.device, generator
        )
        # 2. Timesteps, with the resolution-dependent shift when the scheduler asks for it.
        scheduler_kwargs: dict[str, Any] = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            patch = pipe.transformer.config.patch_size
            scheduler_kwargs["mu"] = calculate_shift(
                (latents.shape[2] // patch) * (latents.shape[3] // patch),
                scheduler.config.get("base_image_seq_len", 256),
                scheduler.config.get("max_image_seq_len", 4096),
                scheduler.config.get("base_shift", 0.5),
                scheduler.config.get("max_shift", 1.16),
            )
        timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, self.device, **scheduler_kwargs)
        return timesteps, latents, None

    def _step_batch(
        self, trajs: list[Trajectory[None]], embeddings: list[PromptEmbedding], want_x0: list[bool], guided: bool
    ) -> None:
        ts = [traj.timesteps[traj.step] for traj in trajs]
        rows = 2 if guided else 1
        # 1. One transformer call: rows [uncond..., cond...] under guidance, one timestep per row.
        model_input = torch.cat([traj.latents for traj in trajs] * rows)
        text = self._conditioning(guidance_parts(trajs, embeddings, guided))
        velocity = self.pipe.transformer(
            hidden_states=model_input,
            timestep=batch_timesteps(ts, rows),
            encoder_hidden_states=text["prompt_embeds"],
            pooled_projections=text["pooled_prompt_embeds"],
            joint_attention_kwargs=None,
            return_dict=False,
        )[0]
        # 2. Classifier-free guidance, then each trajectory's own Euler step.
        n = len(trajs)
        if guided:
            velocity = guide(velocity[:n], velocity[n:], [traj.guidance_scale for traj in trajs])
        for j, (traj, t) in enumerate(zip(trajs, ts, strict=True)):
            flow_match_step(traj, velocity[j : j + 1], t, want_x0[j])

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        vae = self.pipe.vae
        latents = (latents / vae.config.scaling_factor) + vae.config.shift_factor
        image = vae.decode(latents.to(vae.dtype), return_dict=False)[0]
        return self.pipe.image_processor.postprocess(image, output_type="np")

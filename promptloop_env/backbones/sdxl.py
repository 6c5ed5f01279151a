"""Backbone for the ``StableDiffusionXLPipeline`` family (SDXL base, sdxl-turbo and other SDXL fine-tunes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionXLPipeline

from promptloop_env.backbones.base import PromptEmbedding, Trajectory, exceeds_window, register_family
from promptloop_env.backbones.batching import guidance_parts
from promptloop_env.backbones.unet_loop import UNetBackbone, UNetState, prepare_unet_run, unet_step


@register_family
class StableDiffusionXLBackbone(UNetBackbone):
    """The UNet denoising loop of ``StableDiffusionXLPipeline.__call__``, in resumable phases.

    A prompt is encoded by both text encoders (``pipe.encode_prompt``): the hidden states side by side condition
    the UNet's cross-attention, and the second encoder's pooled projection joins the size and crop "time ids" in
    the added conditioning. The negative follows the pipeline: with ``negative_prompt=None`` and the pipeline's
    ``force_zeros_for_empty_prompt`` (SDXL base), the unconditional embeddings are zeros. Guidance ``<= 1`` (as in
    sdxl-turbo, used with ``guidance_scale=0.0`` and 1-4 steps) skips the unconditional half.

    The options (``guidance_rescale``, ``eta``) are :class:`~promptloop_env.backbones.unet_loop.UNetBackbone`'s.
    """

    family = "sdxl"
    pipeline_class = StableDiffusionXLPipeline
    default_taesd = "madebyollin/taesdxl"
    default_guidance_scale = 5.0  # StableDiffusionXLPipeline.__call__'s default

    @property
    def _embed_dtype(self) -> torch.dtype:
        # encode_prompt casts the embeddings to the second text encoder's dtype (the UNet's without it).
        encoder = self.pipe.text_encoder_2
        return encoder.dtype if encoder is not None else self.pipe.unet.dtype

    def _encode(self, prompt: str) -> PromptEmbedding:
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return {"prompt_embeds": embeds, "text_embeds": pooled}

    def _encode_negative(self, negative_prompt: str | None) -> PromptEmbedding:
        # The pipeline's own rules (zeros under force_zeros_for_empty_prompt, else the encoded negative).
        _, embeds, _, pooled = self.pipe.encode_prompt(
            "",
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative_prompt,
        )
        return {"prompt_embeds": embeds, "text_embeds": pooled}

    def is_truncated(self, prompt: str) -> bool:
        return any(exceeds_window(tok, prompt) for tok in (self.pipe.tokenizer, self.pipe.tokenizer_2) if tok)

    def _prepare(
        self, scheduler: Any, generator: torch.Generator, num_inference_steps: int, guidance_scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, UNetState]:
        pipe = self.pipe
        timesteps, latents, state = prepare_unet_run(
            self, scheduler, generator, num_inference_steps, guidance_scale, self._embed_dtype, self.eta
        )
        height, width = self.image_size
        # The added "time ids": original size, crop corner, target size (the pipeline's defaults).
        if pipe.text_encoder_2 is not None:
            projection_dim = pipe.text_encoder_2.config.projection_dim
        else:
            projection_dim = self.encode("")[0]["text_embeds"].shape[-1]
        state.time_ids = pipe._get_add_time_ids(
            (height, width),
            (0, 0),
            (height, width),
            dtype=self._embed_dtype,
            text_encoder_projection_dim=projection_dim,
        ).to(self.device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        return timesteps, latents, state

    def _step_batch(
        self, trajs: list[Trajectory[UNetState]], embeddings: list[PromptEmbedding], want_x0: list[bool], guided: bool
    ) -> None:
        text = self._conditioning(guidance_parts(trajs, embeddings, guided))
        time_ids = torch.cat([traj.state.time_ids for traj in trajs] * (2 if guided else 1))
        added = {"text_embeds": text["text_embeds"], "time_ids": time_ids}
        unet_step(self, trajs, text["prompt_embeds"], want_x0, guided, self.guidance_rescale, added)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        """The pipeline's decode: fp16 VAEs with ``force_upcast`` decode in fp32, latents mean/std honoured."""
        pipe, vae = self.pipe, self.pipe.vae
        needs_upcasting = vae.dtype == torch.float16 and vae.config.force_upcast
        if needs_upcasting:
            vae.to(dtype=torch.float32)
        try:
            latents = latents.to(next(iter(vae.post_quant_conv.parameters())).dtype if needs_upcasting else vae.dtype)
            mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                channels = latents.shape[1]
                mean = torch.tensor(mean).view(1, channels, 1, 1).to(latents.device, latents.dtype)
                std = torch.tensor(std).view(1, channels, 1, 1).to(latents.device, latents.dtype)
                latents = latents * std / vae.config.scaling_factor + mean
            else:
                latents = latents / vae.config.scaling_factor
            image = vae.decode(latents, return_dict=False)[0]
        finally:
            if needs_upcasting:
                vae.to(dtype=torch.float16)
        if pipe.watermark is not None:
            image = pipe.watermark.apply_watermark(image)
        return pipe.image_processor.postprocess(image, output_type="np")

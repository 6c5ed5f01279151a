"""Backbone for the ``StableDiffusionPipeline`` family (SD 1.x / 2.x, epsilon and v-prediction UNets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from promptloop_env.backbones.base import PromptEmbedding, Trajectory, register_family
from promptloop_env.backbones.batching import guidance_parts
from promptloop_env.backbones.unet_loop import UNetBackbone, UNetState, prepare_unet_run, unet_step


@register_family
class StableDiffusionBackbone(UNetBackbone):
    """The UNet denoising loop of ``StableDiffusionPipeline.__call__``, in resumable phases.

    Prompts go through the pipeline's own ``encode_prompt`` (one CLIP text encoder); ``guidance_rescale`` and
    ``eta`` mirror the pipeline's arguments of the same names (see
    :class:`~promptloop_env.backbones.unet_loop.UNetBackbone` for the schedulers that work).
    """

    family = "sd"
    pipeline_class = StableDiffusionPipeline
    default_taesd = "madebyollin/taesd"
    default_guidance_scale = 7.5  # StableDiffusionPipeline.__call__'s default

    def _encode(self, prompt: str) -> PromptEmbedding:
        embeds, _ = self.pipe.encode_prompt(prompt, self.device, 1, False)
        return {"prompt_embeds": embeds}

    def _prepare(
        self, scheduler: Any, generator: torch.Generator, num_inference_steps: int, guidance_scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, UNetState]:
        dtype = self.pipe.text_encoder.dtype if self.pipe.text_encoder is not None else self.dtype
        return prepare_unet_run(self, scheduler, generator, num_inference_steps, guidance_scale, dtype, self.eta)

    def _step_batch(
        self, trajs: list[Trajectory[UNetState]], embeddings: list[PromptEmbedding], want_x0: list[bool], guided: bool
    ) -> None:
        text = self._conditioning(guidance_parts(trajs, embeddings, guided))["prompt_embeds"]
        unet_step(self, trajs, text, want_x0, guided, self.guidance_rescale)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        vae = self.pipe.vae
        image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False, generator=generator)[
            0
        ]
        return self.pipe.image_processor.postprocess(image, output_type="np", do_denormalize=[True] * image.shape[0])

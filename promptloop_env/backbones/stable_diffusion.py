"""Backbone for the ``StableDiffusionPipeline`` family (SD 1.x / 2.x, epsilon and v-prediction UNets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from promptloop_env.backbones.base import DiffusersBackbone, LatentRGB, PromptEmbedding, Trajectory, register_family
from promptloop_env.backbones.batching import ConditioningCache, guidance_parts
from promptloop_env.backbones.unet_loop import UNetState, prepare_unet_run, unet_step


@register_family
class StableDiffusionBackbone(DiffusersBackbone):
    """The UNet denoising loop of ``StableDiffusionPipeline.__call__``, in resumable phases.

    Any scheduler whose whole state lives in its object and the trajectory's generator works: DDIM, DDPM,
    Euler, Euler ancestral, DPM-Solver++ (multistep history kept per trajectory), UniPC, PNDM, LMS, Heun
    and others. ``guidance_rescale`` and ``eta`` mirror the pipeline's arguments of the same names.

    >>> from promptloop_env.backbones.tiny import tiny_stable_diffusion_pipeline
    >>> backbone = StableDiffusionBackbone(tiny_stable_diffusion_pipeline())
    >>> traj = backbone.start(seed=0, num_inference_steps=4, guidance_scale=2.0)
    >>> emb, truncated = backbone.encode("a red circle")
    >>> backbone.denoise([traj], [emb], [4])
    >>> backbone.decode(traj.latents).shape
    (1, 64, 64, 3)
    """

    family = "sd"
    pipeline_class = StableDiffusionPipeline
    # The community's preview map for SD 1.x/2.x latents (ComfyUI's latent formats), rows = latent channels.
    default_latent_rgb = LatentRGB(
        (
            (0.3512, 0.2297, 0.3227),
            (0.3250, 0.4974, 0.2350),
            (-0.2829, 0.1762, 0.2721),
            (-0.2120, -0.2616, -0.7177),
        )
    )
    default_taesd = "madebyollin/taesd"
    default_guidance_scale = 7.5  # StableDiffusionPipeline.__call__'s default

    def __init__(self, pipe: Any, guidance_rescale: float = 0.0, eta: float = 0.0, **kwargs: Any) -> None:
        super().__init__(pipe, **kwargs)
        self.guidance_rescale = guidance_rescale
        self.eta = eta
        self._conditioning = ConditioningCache()

    def _encode(self, prompt: str) -> PromptEmbedding:
        embeds, _ = self.pipe.encode_prompt(prompt, self.device, 1, False)
        return {"prompt_embeds": embeds}

    def does_guidance(self, guidance_scale: float) -> bool:
        # Same rule as StableDiffusionPipeline.do_classifier_free_guidance.
        return guidance_scale > 1.0 and self.pipe.unet.config.time_cond_proj_dim is None

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

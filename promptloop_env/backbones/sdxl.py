"""Backbone for the ``StableDiffusionXLPipeline`` family (SDXL base, sdxl-turbo and other SDXL fine-tunes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import rescale_noise_cfg, retrieve_timesteps
from diffusers.utils.torch_utils import randn_tensor

from promptloop_env.backbones.base import DiffusersBackbone, PromptEmbedding, Trajectory, exceeds_window
from promptloop_env.backbones.batching import ConditioningCache, batch_timesteps, guidance_parts, guide
from promptloop_env.backbones.x0 import estimate_x0


class StableDiffusionXLBackbone(DiffusersBackbone):
    """The UNet denoising loop of ``StableDiffusionXLPipeline.__call__``, in resumable phases.

    A prompt is encoded by both text encoders (``pipe.encode_prompt``): the hidden states side by side condition
    the UNet's cross-attention, and the second encoder's pooled projection joins the size and crop "time ids" in
    the added conditioning. The negative follows the pipeline: with ``negative_prompt=None`` and the pipeline's
    ``force_zeros_for_empty_prompt`` (SDXL base), the unconditional embeddings are zeros. Guidance ``<= 1`` (as in
    sdxl-turbo, used with ``guidance_scale=0.0`` and 1-4 steps) skips the unconditional half.

    Args:
        pipe: a loaded ``StableDiffusionXLPipeline``.
        guidance_rescale: as the pipeline's argument of the same name.
        eta: DDIM eta, as the pipeline's argument of the same name.
        **kwargs: see :class:`~promptloop_env.backbones.base.DiffusersBackbone`.

    >>> from promptloop_env.backbones.tiny import tiny_stable_diffusion_xl_pipeline
    >>> backbone = StableDiffusionXLBackbone(tiny_stable_diffusion_xl_pipeline())
    >>> traj = backbone.start(seed=0, num_inference_steps=2, guidance_scale=5.0)
    >>> backbone.denoise([traj], [backbone.encode("a red circle")[0]], [2])
    >>> backbone.decode(traj.latents).shape
    (1, 64, 64, 3)
    """

    family = "sdxl"
    default_taesd = "madebyollin/taesdxl"

    def __init__(self, pipe: Any, guidance_rescale: float = 0.0, eta: float = 0.0, **kwargs: Any) -> None:
        kwargs.setdefault("default_guidance_scale", 5.0)  # StableDiffusionXLPipeline.__call__'s default
        super().__init__(pipe, **kwargs)
        self.guidance_rescale = guidance_rescale
        self.eta = eta
        self._conditioning = ConditioningCache()

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.pipe.default_sample_size * self.pipe.vae_scale_factor
        return size, size

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

    def does_guidance(self, guidance_scale: float) -> bool:
        # Same rule as StableDiffusionXLPipeline.do_classifier_free_guidance.
        return guidance_scale > 1.0 and self.pipe.unet.config.time_cond_proj_dim is None

    def start(
        self,
        seed: int,
        num_inference_steps: int,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
    ) -> Trajectory:
        guidance_scale = self.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        generator = self._generator(seed)
        scheduler = self.new_scheduler()
        pipe = self.pipe
        # 1. Timesteps, then the starting latents drawn exactly as StableDiffusionXLPipeline.prepare_latents.
        timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, self.device)
        height, width = self.image_size
        shape = (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        dtype = self._embed_dtype
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=dtype)
        latents = latents * scheduler.init_noise_sigma
        # 2. The added "time ids": original size, crop corner, target size (the pipeline's defaults).
        if pipe.text_encoder_2 is not None:
            projection_dim = pipe.text_encoder_2.config.projection_dim
        else:
            projection_dim = self.encode("")[0]["text_embeds"].shape[-1]
        time_ids = pipe._get_add_time_ids(
            (height, width), (0, 0), (height, width), dtype=dtype, text_encoder_projection_dim=projection_dim
        ).to(self.device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        negative = self.encode_negative(negative_prompt) if self.does_guidance(guidance_scale) else None
        traj = Trajectory(seed, generator, scheduler, timesteps, latents, guidance_scale, negative)
        traj.extra["step_kwargs"] = self._step_kwargs(traj, self.eta)
        traj.extra["time_ids"] = time_ids
        if pipe.unet.config.time_cond_proj_dim is not None:
            w = torch.tensor(guidance_scale - 1).repeat(1)
            traj.extra["timestep_cond"] = pipe.get_guidance_scale_embedding(
                w, embedding_dim=pipe.unet.config.time_cond_proj_dim
            ).to(device=self.device, dtype=latents.dtype)
        return traj

    def _step_batch(
        self, trajs: list[Trajectory], embeddings: list[PromptEmbedding], want_x0: list[bool], guided: bool
    ) -> None:
        ts = [traj.timesteps[traj.step] for traj in trajs]
        # 1. Scale each trajectory's input with its own scheduler; rows laid out [uncond..., cond...].
        inputs = [
            traj.scheduler.scale_model_input(torch.cat([traj.latents] * 2) if guided else traj.latents, t)
            for traj, t in zip(trajs, ts, strict=True)
        ]
        model_input = torch.cat([x[:1] for x in inputs] + [x[1:] for x in inputs]) if guided else torch.cat(inputs)
        text = self._conditioning(guidance_parts(trajs, embeddings, guided))
        rows = 2 if guided else 1
        time_ids = torch.cat([traj.extra["time_ids"] for traj in trajs] * rows)
        # 2. One UNet call; a scalar timestep when all agree, as the pipeline passes it.
        timestep = ts[0] if all(bool(t == ts[0]) for t in ts) else batch_timesteps(ts, rows).to(self.device)
        timestep_cond = None
        if "timestep_cond" in trajs[0].extra:
            timestep_cond = torch.cat([traj.extra["timestep_cond"] for traj in trajs] * rows)
        noise_pred = self.pipe.unet(
            model_input,
            timestep,
            encoder_hidden_states=text["prompt_embeds"],
            timestep_cond=timestep_cond,
            cross_attention_kwargs=None,
            added_cond_kwargs={"text_embeds": text["text_embeds"], "time_ids": time_ids},
            return_dict=False,
        )[0]
        # 3. Classifier-free guidance.
        n = len(trajs)
        if guided:
            cond = noise_pred[n:]
            noise_pred = guide(noise_pred[:n], cond, [traj.guidance_scale for traj in trajs])
            if self.guidance_rescale > 0.0:
                noise_pred = rescale_noise_cfg(noise_pred, cond, guidance_rescale=self.guidance_rescale)
        # 4. Each trajectory steps its own scheduler with its own generator.
        for j, (traj, t) in enumerate(zip(trajs, ts, strict=True)):
            eps = noise_pred[j : j + 1]
            x0 = estimate_x0(traj.scheduler, eps, t, traj.latents) if want_x0[j] else None
            out = traj.scheduler.step(eps, t, traj.latents, **traj.extra["step_kwargs"], return_dict=True)
            traj.latents = out.prev_sample
            if want_x0[j]:
                traj.x0 = getattr(out, "pred_original_sample", None)
                if traj.x0 is None:
                    traj.x0 = x0
            traj.step += 1

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

"""Backbone for the ``StableDiffusionPipeline`` family (SD 1.x / 2.x, epsilon and v-prediction UNets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg, retrieve_timesteps
from diffusers.utils.torch_utils import randn_tensor

from promptloop_env.backbones.base import DiffusersBackbone, PromptEmbedding, Trajectory, cat_embeddings
from promptloop_env.backbones.x0 import estimate_x0


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
    default_taesd = "madebyollin/taesd"

    def __init__(self, pipe: Any, guidance_rescale: float = 0.0, eta: float = 0.0, **kwargs: Any) -> None:
        super().__init__(pipe, **kwargs)
        self.guidance_rescale = guidance_rescale
        self.eta = eta
        self._last_conditioning: tuple | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        return size, size

    def _encode(self, prompt: str) -> PromptEmbedding:
        embeds, _ = self.pipe.encode_prompt(prompt, self.device, 1, False)
        return {"prompt_embeds": embeds}

    def does_guidance(self, guidance_scale: float) -> bool:
        # Same rule as StableDiffusionPipeline.do_classifier_free_guidance.
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
        # 1. Timesteps first: the initial noise scale of sigma-based schedulers depends on them.
        timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, self.device)
        # 2. Starting latents drawn exactly as StableDiffusionPipeline.prepare_latents draws them.
        height, width = self.image_size
        shape = (
            1,
            self.pipe.unet.config.in_channels,
            height // self.pipe.vae_scale_factor,
            width // self.pipe.vae_scale_factor,
        )
        dtype = self.pipe.text_encoder.dtype if self.pipe.text_encoder is not None else self.dtype
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=dtype)
        latents = latents * scheduler.init_noise_sigma
        negative = self.encode_negative(negative_prompt) if self.does_guidance(guidance_scale) else None
        traj = Trajectory(seed, generator, scheduler, timesteps, latents, guidance_scale, negative)
        traj.extra["step_kwargs"] = self._step_kwargs(traj, self.eta)
        if self.pipe.unet.config.time_cond_proj_dim is not None:
            w = torch.tensor(guidance_scale - 1).repeat(1)
            traj.extra["timestep_cond"] = self.pipe.get_guidance_scale_embedding(
                w, embedding_dim=self.pipe.unet.config.time_cond_proj_dim
            ).to(device=self.device, dtype=latents.dtype)
        return traj

    def _step_batch(
        self, trajs: list[Trajectory], embeddings: list[PromptEmbedding], want_x0: list[bool], guided: bool
    ) -> None:
        ts = [traj.timesteps[traj.step] for traj in trajs]
        # 1. Scale each trajectory's input with its own scheduler (sigma-based ones keep a step index).
        inputs = []
        for traj, t in zip(trajs, ts):
            x = torch.cat([traj.latents] * 2) if guided else traj.latents
            inputs.append(traj.scheduler.scale_model_input(x, t))
        if guided:  # layout [uncond_1..n, cond_1..n], as the pipeline's torch.cat([negative, positive])
            model_input = torch.cat([x[:1] for x in inputs] + [x[1:] for x in inputs])
        else:
            model_input = torch.cat(inputs)
        text = self._conditioning(trajs, embeddings, guided)
        # 2. One UNet call; a scalar timestep when all agree, as the pipeline passes it.
        same_t = all(bool(t == ts[0]) for t in ts)
        if same_t:
            timestep = ts[0]
        else:
            timestep = torch.stack(ts).to(self.device)
            timestep = torch.cat([timestep, timestep]) if guided else timestep
        timestep_cond = None
        if "timestep_cond" in trajs[0].extra:
            timestep_cond = torch.cat([traj.extra["timestep_cond"] for traj in trajs])
        noise_pred = self.pipe.unet(
            model_input,
            timestep,
            encoder_hidden_states=text,
            timestep_cond=timestep_cond,
            cross_attention_kwargs=None,
            return_dict=False,
        )[0]
        # 3. Classifier-free guidance.
        n = len(trajs)
        if guided:
            uncond, cond = noise_pred[:n], noise_pred[n:]
            scales = {traj.guidance_scale for traj in trajs}
            if len(scales) == 1:
                noise_pred = uncond + trajs[0].guidance_scale * (cond - uncond)
            else:
                g = torch.tensor([traj.guidance_scale for traj in trajs], device=uncond.device, dtype=uncond.dtype)
                noise_pred = uncond + g.view(-1, 1, 1, 1) * (cond - uncond)
            if self.guidance_rescale > 0.0:
                noise_pred = rescale_noise_cfg(noise_pred, cond, guidance_rescale=self.guidance_rescale)
        # 4. Each trajectory steps its own scheduler with its own generator.
        for j, (traj, t) in enumerate(zip(trajs, ts)):
            eps = noise_pred[j : j + 1]
            x0 = estimate_x0(traj.scheduler, eps, t, traj.latents) if want_x0[j] else None
            out = traj.scheduler.step(eps, t, traj.latents, **traj.extra["step_kwargs"], return_dict=True)
            traj.latents = out.prev_sample
            if want_x0[j]:
                traj.x0 = getattr(out, "pred_original_sample", None)
                if traj.x0 is None:
                    traj.x0 = x0
            traj.step += 1

    def _conditioning(self, trajs: list[Trajectory], embeddings: list[PromptEmbedding], guided: bool) -> torch.Tensor:
        # Concatenated once per segment, not per step: the last result is kept with the objects it was built
        # from (holding them keeps their ids unique).
        parts = ([t.negative for t in trajs] if guided else []) + list(embeddings)
        key = tuple(id(p) for p in parts)
        if self._last_conditioning is None or self._last_conditioning[0] != key:
            self._last_conditioning = (key, parts, cat_embeddings(parts)["prompt_embeds"])
        return self._last_conditioning[2]

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        vae = self.pipe.vae
        image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False, generator=generator)[0]
        return self.pipe.image_processor.postprocess(image, output_type="np", do_denormalize=[True] * image.shape[0])

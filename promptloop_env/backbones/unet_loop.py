"""The UNet sampling loop shared by the SD and SDXL backbones: their base class and the loop's two functions.

Both pipelines take the same sampling options, prepare timesteps and latents the same way and run the same
guided UNet step; SDXL only adds its "time ids" and pooled text embeddings to the UNet call. Keeping one copy
of that loop here keeps their bit-exact replay in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg, retrieve_timesteps
from diffusers.utils.torch_utils import randn_tensor

from promptloop_env.backbones.base import DiffusersBackbone, Trajectory
from promptloop_env.backbones.batching import ConditioningCache, batch_timesteps, guide
from promptloop_env.backbones.x0 import estimate_x0


@dataclass
class UNetState:
    """Per-run state of the UNet families.

    Attributes:
        step_kwargs: the extra arguments of this run's ``scheduler.step`` (``eta``, ``generator``).
        timestep_cond: guidance-distilled UNets' (LCM) embedding of the guidance scale, else None.
        time_ids: SDXL's added "time ids" (original size, crop corner, target size), else None.
    """

    step_kwargs: dict[str, Any]
    timestep_cond: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None


class UNetBackbone(DiffusersBackbone):
    """A family whose pipeline samples with a UNet and a diffusers scheduler (``StableDiffusionPipeline``, SDXL).

    Any scheduler whose whole state lives in its object and the trajectory's generator works: DDIM, DDPM,
    Euler, Euler ancestral, DPM-Solver++ (multistep history kept per trajectory), UniPC, PNDM, LMS, Heun
    and others. Guidance-distilled UNets (LCM, ``time_cond_proj_dim``) embed the scale instead of guiding.

    Args:
        pipe: a loaded pipeline of the family.
        guidance_rescale: as the pipelines' argument of the same name.
        eta: DDIM eta, as the pipelines' argument of the same name.
        **kwargs: see :class:`~promptloop_env.backbones.base.DiffusersBackbone`.
    """

    def __init__(self, pipe: Any, guidance_rescale: float = 0.0, eta: float = 0.0, **kwargs: Any) -> None:
        super().__init__(pipe, **kwargs)
        self.guidance_rescale = guidance_rescale
        self.eta = eta
        self._conditioning = ConditioningCache()

    def does_guidance(self, guidance_scale: float) -> bool:
        # Same rule as the pipelines' do_classifier_free_guidance.
        return guidance_scale > 1.0 and self.pipe.unet.config.time_cond_proj_dim is None


def prepare_unet_run(
    backbone: DiffusersBackbone,
    scheduler: Any,
    generator: torch.Generator,
    num_inference_steps: int,
    guidance_scale: float,
    latents_dtype: torch.dtype,
    eta: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, UNetState]:
    """Timesteps, starting latents (drawn exactly as the pipelines' ``prepare_latents``) and :class:`UNetState`.

    The timesteps are set first: the initial noise scale of sigma-based schedulers depends on them.
    """
    pipe = backbone.pipe
    timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, backbone.device)
    height, width = backbone.image_size
    shape = (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    latents = randn_tensor(shape, generator=generator, device=backbone.device, dtype=latents_dtype)
    latents = latents * scheduler.init_noise_sigma
    state = UNetState(backbone._step_kwargs(generator, eta))
    if pipe.unet.config.time_cond_proj_dim is not None:  # guidance-distilled UNets (LCM) embed the scale
        w = torch.tensor(guidance_scale - 1).repeat(1)
        state.timestep_cond = pipe.get_guidance_scale_embedding(
            w, embedding_dim=pipe.unet.config.time_cond_proj_dim
        ).to(device=backbone.device, dtype=latents.dtype)
    return timesteps, latents, state


def unet_step(
    backbone: DiffusersBackbone,
    trajs: list[Trajectory[UNetState]],
    encoder_hidden_states: torch.Tensor,
    want_x0: list[bool],
    guided: bool,
    guidance_rescale: float = 0.0,
    added_cond_kwargs: dict[str, Any] | None = None,
) -> None:
    """One denoising step for a batch of trajectories: one UNet call, then each trajectory's own scheduler.

    ``encoder_hidden_states`` (and ``added_cond_kwargs``) are laid out ``[uncond_1..n, cond_1..n]`` under
    guidance, as the pipelines' ``torch.cat([negative, positive])``.
    """
    ts = [traj.timesteps[traj.step] for traj in trajs]
    # 1. Scale each trajectory's input with its own scheduler (sigma-based ones keep a step index).
    inputs = [
        traj.scheduler.scale_model_input(torch.cat([traj.latents] * 2) if guided else traj.latents, t)
        for traj, t in zip(trajs, ts)
    ]
    model_input = torch.cat([x[:1] for x in inputs] + [x[1:] for x in inputs]) if guided else torch.cat(inputs)
    rows = 2 if guided else 1
    # 2. One UNet call; a scalar timestep when all agree, as the pipelines pass it.
    timestep = ts[0] if all(bool(t == ts[0]) for t in ts) else batch_timesteps(ts, rows).to(backbone.device)
    timestep_cond = None
    if trajs[0].state.timestep_cond is not None:
        timestep_cond = torch.cat([traj.state.timestep_cond for traj in trajs] * rows)
    noise_pred = backbone.pipe.unet(
        model_input,
        timestep,
        encoder_hidden_states=encoder_hidden_states,
        timestep_cond=timestep_cond,
        cross_attention_kwargs=None,
        added_cond_kwargs=added_cond_kwargs,
        return_dict=False,
    )[0]
    # 3. Classifier-free guidance.
    n = len(trajs)
    if guided:
        cond = noise_pred[n:]
        noise_pred = guide(noise_pred[:n], cond, [traj.guidance_scale for traj in trajs])
        if guidance_rescale > 0.0:
            noise_pred = rescale_noise_cfg(noise_pred, cond, guidance_rescale=guidance_rescale)
    # 4. Each trajectory steps its own scheduler with its own generator; x0 kept where asked.
    for j, (traj, t) in enumerate(zip(trajs, ts)):
        eps = noise_pred[j : j + 1]
        x0 = estimate_x0(traj.scheduler, eps, t, traj.latents) if want_x0[j] else None
        out = traj.scheduler.step(eps, t, traj.latents, **traj.state.step_kwargs, return_dict=True)
        traj.latents = out.prev_sample
        if want_x0[j]:
            traj.x0 = getattr(out, "pred_original_sample", None)
            if traj.x0 is None:
                traj.x0 = x0
        traj.step += 1

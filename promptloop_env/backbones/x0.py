"""Tweedie / x0 estimates from a denoiser output, for any diffusers scheduler.

Used when a scheduler's ``step`` does not return ``pred_original_sample`` itself (DPM-Solver, UniPC,
PNDM, ...). Computed before ``scheduler.step`` so the scheduler's step index still points at ``t``.
"""

from __future__ import annotations

from typing import Any

import torch


def _sigma_based(scheduler: Any) -> bool:
    # Karras-style samplers (Euler, Heun, LMS, DPM2, ...) keep x_t = x0 + sigma * eps and scale the input.
    return hasattr(scheduler, "sigmas") and float(scheduler.init_noise_sigma) != 1.0


def estimate_x0(
    scheduler: Any, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor
) -> torch.Tensor:
    """The clean-sample estimate implied by ``model_output`` at ``timestep`` for ``sample`` (x_t).

    Handles ``epsilon``, ``v_prediction`` and ``sample`` prediction, for sigma-based and
    alpha-based schedulers.

    >>> from diffusers import DDIMScheduler
    >>> s = DDIMScheduler(); s.set_timesteps(10)
    >>> x = torch.randn(1, 4, 8, 8); eps = torch.zeros_like(x)
    >>> t = s.timesteps[0]
    >>> torch.allclose(estimate_x0(s, eps, t, x), x / s.alphas_cumprod[t].sqrt())
    True
    """
    prediction_type = scheduler.config.get("prediction_type", "epsilon")
    if prediction_type == "sample":
        return model_output
    x = sample.float()
    out = model_output.float()
    if _sigma_based(scheduler):
        index = scheduler.step_index if scheduler.step_index is not None else scheduler.index_for_timestep(timestep)
        sigma = scheduler.sigmas[index].to(x.device)
        if prediction_type == "epsilon":
            x0 = x - sigma * out
        else:  # v_prediction, as in EulerDiscreteScheduler.step
            x0 = out * (-sigma / (sigma**2 + 1) ** 0.5) + x / (sigma**2 + 1)
    else:
        alpha = scheduler.alphas_cumprod.to(x.device)[int(timestep)]
        if prediction_type == "epsilon":
            x0 = (x - (1 - alpha).sqrt() * out) / alpha.sqrt()
        else:
            x0 = alpha.sqrt() * x - (1 - alpha).sqrt() * out
    return x0.to(sample.dtype)

"""Helpers that batch many trajectories into one denoiser call, shared by the SDXL, SD3 and FLUX backbones.

Every helper keeps the single-trajectory case bit-identical to the pipeline's own arithmetic (a Python float
guidance scale, the pipeline's ``[negative..., positive...]`` layout), so batching one trajectory replays
``pipe(...)`` exactly and batching many stays within float rounding of one-by-one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from promptloop_env.backbones.base import PromptEmbedding, Trajectory, cat_embeddings


class ConditioningCache:
    """Concatenated text conditioning of a batch, rebuilt only when the batch's embeddings change.

    Within a segment the env passes the same embedding objects at every step, so the concatenation (and its
    memory traffic) happens once per segment. The parts are held with the result, which keeps their ``id``
    unique while cached.
    """

    def __init__(self) -> None:
        self._key: tuple[int, ...] | None = None
        self._parts: list[PromptEmbedding] = []
        self._value: PromptEmbedding | None = None

    def __call__(self, parts: Sequence[PromptEmbedding]) -> PromptEmbedding:
        key = tuple(id(p) for p in parts)
        if key != self._key or self._value is None:
            self._key, self._parts, self._value = key, list(parts), cat_embeddings(parts)
        return self._value


def guidance_parts(
    trajs: Sequence[Trajectory], embeddings: Sequence[PromptEmbedding], guided: bool
) -> list[PromptEmbedding]:
    """The per-row embeddings of a batch: ``[negative_1..n, positive_1..n]`` under guidance, else positives."""
    return ([t.negative for t in trajs] + list(embeddings)) if guided else list(embeddings)


def guide(uncond: torch.Tensor, cond: torch.Tensor, scales: Sequence[float]) -> torch.Tensor:
    """Classifier-free guidance ``uncond + w * (cond - uncond)``, with a Python float when all ``w`` agree.

    >>> u, c = torch.zeros(2, 1), torch.ones(2, 1)
    >>> guide(u, c, [2.0, 3.0]).flatten().tolist()
    [2.0, 3.0]
    """
    if len(set(scales)) == 1:
        return uncond + scales[0] * (cond - uncond)
    w = torch.tensor(list(scales), device=uncond.device, dtype=uncond.dtype).view(-1, *([1] * (uncond.ndim - 1)))
    return uncond + w * (cond - uncond)


def batch_timesteps(ts: Sequence[torch.Tensor], repeats: int = 1) -> torch.Tensor:
    """One timestep per row: the trajectories' timesteps, ``repeats`` times over (2 under guidance)."""
    stacked = torch.stack([torch.as_tensor(t) for t in ts])
    return stacked.repeat(repeats) if repeats > 1 else stacked


def flow_match_step(traj: Trajectory, velocity: torch.Tensor, t: torch.Tensor, want_x0: bool) -> None:
    """Advance one flow-matching trajectory by one step and keep its x0 estimate ``x_t - sigma_t * v``.

    ``FlowMatchEulerDiscreteScheduler`` holds ``x_t = (1 - sigma) x0 + sigma * noise`` and the model predicts
    ``v = noise - x0``, so ``x0 = x_t - sigma_t * v``. The pipelines call ``scheduler.step`` without a generator
    (stochastic sampling would then draw from the global RNG); here the trajectory's generator is passed when the
    scheduler samples stochastically, so episodes stay reproducible.
    """
    scheduler = traj.scheduler
    kwargs = {"generator": traj.generator} if scheduler.config.get("stochastic_sampling", False) else {}
    latents = traj.latents
    traj.latents = scheduler.step(velocity, t, latents, return_dict=False, **kwargs)[0]
    if want_x0:
        sigma = scheduler.sigmas[scheduler.step_index - 1]
        traj.x0 = (latents.float() - sigma * velocity.float()).to(latents.dtype)
    traj.step += 1

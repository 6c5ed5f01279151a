"""Previews: the x0 estimate of the current latent, as a ``uint8 [B, S, S, 3]`` image.

``PREVIEWS`` maps a name to a :class:`Preview` class: ``"vae"`` decodes with the pipeline's own VAE, ``"taesd"``
with a tiny autoencoder (``AutoencoderTiny``, the family's by default), ``"latent_rgb"`` applies the backbone's
linear latent-to-RGB map (no weights, about free) and ``"none"`` returns black images of the right shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from promptloop_env.backbones.base import DiffusersBackbone, to_uint8
from promptloop_env.registry import Registry


def resize_images(images: torch.Tensor, size: int) -> np.ndarray:
    """``float [B, 3, H, W]`` in [0, 1] to ``uint8 [B, size, size, 3]`` (bilinear, antialiased when shrinking)."""
    if images.shape[-2:] != (size, size):
        # Upscaling, the antialiased kernel equals plain bilinear (to float rounding) at a third of the cost.
        shrink = size < max(images.shape[-2:])
        images = F.interpolate(
            images.float(), size=(size, size), mode="bilinear", antialias=shrink, align_corners=False
        )
    return to_uint8(images.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy())


PREVIEWS: Registry[type[Preview]] = Registry("preview")
"""The previews, by name: a :class:`Preview` subclass each (``@PREVIEWS.register("name")`` adds one)."""


class Preview:
    """Latents in model space (``[B, ...]``, the sampler's layout) to ``uint8 [B, size, size, 3]`` previews.

    Every preview takes the same arguments and ignores those it does not use.

    Args:
        backbone: the backbone whose latents are previewed.
        size: output side length in pixels.
        taesd: ``AutoencoderTiny`` (instance, folder or hub id) of ``TaesdPreview``; default: the backbone's.
        local_files_only: forwarded to ``from_pretrained``.
    """

    def __init__(
        self, backbone: DiffusersBackbone, size: int, taesd: Any = None, local_files_only: bool = False
    ) -> None:
        self.backbone = backbone
        self.size = size

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def of_final(self, latents: torch.Tensor, final_images: np.ndarray) -> np.ndarray:
        """The preview at a terminal step, given the final latents and their decoded ``uint8 [B, H, W, 3]`` images."""
        return self(latents)


@PREVIEWS.register("none")
class BlankPreview(Preview):
    """``preview="none"``: black images, no computation."""

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        return np.zeros((latents.shape[0], self.size, self.size, 3), dtype=np.uint8)


@PREVIEWS.register("vae")
class VaePreview(Preview):
    """``preview="vae"``: the pipeline's own VAE decode and post-processing, resized."""

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        images = torch.from_numpy(self.backbone.decode(latents)).permute(0, 3, 1, 2)
        return resize_images(images, self.size)

    def of_final(self, latents: torch.Tensor, final_images: np.ndarray) -> np.ndarray:
        # The final image is the decode of the final latents: resize it rather than decode twice.
        return resize_images(torch.from_numpy(final_images).permute(0, 3, 1, 2).float() / 255.0, self.size)


@PREVIEWS.register("latent_rgb")
class LatentRGBPreview(Preview):
    """``preview="latent_rgb"``: the backbone's :class:`~promptloop_env.backbones.base.LatentRGB` map, resized.

    >>> from promptloop_env.backbones import load_backbone
    >>> LatentRGBPreview(load_backbone("tiny"), 16)(torch.zeros(2, 4, 8, 8)).shape
    (2, 16, 16, 3)
    """

    def __init__(self, backbone: DiffusersBackbone, size: int, **kwargs: Any) -> None:
        super().__init__(backbone, size, **kwargs)
        if backbone.latent_rgb is None:
            raise ValueError(
                f"preview='latent_rgb' needs a latent-to-RGB map, and the {backbone.family!r} family has none: pass "
                "latent_rgb={'factors': ..., 'bias': ...} to the backbone (or a latent_rgb.json in its folder), or "
                "use preview='vae' or 'taesd'."
            )

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        rgb = self.backbone.latent_rgb.to_rgb(self.backbone.to_spatial(latents))
        return resize_images((rgb + 1.0) / 2.0, self.size)


@PREVIEWS.register("taesd")
class TaesdPreview(Preview):
    """``preview="taesd"``: decode with a tiny autoencoder (``AutoencoderTiny``), as a pipeline using it as its VAE."""

    def __init__(
        self, backbone: DiffusersBackbone, size: int, taesd: Any = None, local_files_only: bool = False
    ) -> None:
        super().__init__(backbone, size)
        source = taesd if taesd is not None else backbone.taesd
        if source is None:
            raise ValueError(
                f"preview='taesd' needs a tiny autoencoder: pass taesd=... (no default for {backbone.family})."
            )
        self.model = load_taesd(source, backbone.device, backbone.vae.dtype, local_files_only)

    @torch.inference_mode()
    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        model = self.model
        spatial = self.backbone.to_spatial(latents).to(model.dtype)
        # taesd3 / taef1 carry their family's shift, as a pipeline applies it to its VAE.
        shift = getattr(model.config, "shift_factor", None) or 0.0
        image = model.decode(spatial / model.config.scaling_factor + shift, return_dict=False)[0]
        return resize_images((image.float() / 2 + 0.5), self.size)


def load_taesd(source: Any, device: torch.device, dtype: torch.dtype, local_files_only: bool = False) -> Any:
    """An ``AutoencoderTiny`` from an instance, a local folder or a hub id (safetensors only)."""
    from diffusers import AutoencoderTiny

    if isinstance(source, AutoencoderTiny):
        return source.to(device=device, dtype=dtype)
    if not isinstance(source, str):
        raise TypeError(f"taesd must be a folder, a hub id or an AutoencoderTiny; got {type(source).__name__}.")
    model = AutoencoderTiny.from_pretrained(
        source, torch_dtype=dtype, use_safetensors=True, local_files_only=local_files_only
    )
    return model.to(device).eval()


def make_preview(
    kind: str, backbone: DiffusersBackbone, size: int, taesd: Any = None, local_files_only: bool = False
) -> Preview:
    """The preview named ``kind`` (a key of :data:`PREVIEWS`) for ``backbone``, ``size`` pixels square."""
    return PREVIEWS[kind](backbone, size, taesd=taesd, local_files_only=local_files_only)

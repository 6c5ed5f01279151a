"""Previews: the x0 estimate of the current latent, as a ``uint8 [B, S, S, 3]`` image.

``preview="vae"`` decodes with the pipeline's own VAE; ``"taesd"`` with the family's tiny autoencoder
(``AutoencoderTiny``); ``"latent_rgb"`` applies a linear latent-to-RGB map (no weights, about free);
``"none"`` returns black images of the right shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from promptloop_env.backbones.base import DiffusersBackbone, to_uint8
from promptloop_env.registry import lookup

PREVIEWS = ("vae", "taesd", "latent_rgb", "none")

# Linear maps from model-space latents (what the sampler holds) to RGB in [-1, 1]: rows are latent
# channels. These are the approximations the community uses for live previews (e.g. ComfyUI's
# latent formats); a backbone may carry its own fitted map (``latent_rgb.json`` in its folder).
LATENT_RGB: dict[str, dict[str, Any]] = {
    "sd": {
        "factors": [
            [0.3512, 0.2297, 0.3227],
            [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177],
        ],
        "bias": [0.0, 0.0, 0.0],
    },
    "sdxl": {
        "factors": [
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        "bias": [0.1084, -0.0175, -0.0011],
    },
}

PreviewFn = Callable[[torch.Tensor], np.ndarray]


def resize_images(images: torch.Tensor, size: int) -> np.ndarray:
    """``float [B, 3, H, W]`` in [0, 1] to ``uint8 [B, size, size, 3]`` (antialiased bilinear)."""
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return to_uint8(images.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy())


def latent_rgb_preview(latents: torch.Tensor, factors: Any, bias: Any, size: int) -> np.ndarray:
    """Linear latent-to-RGB preview of ``[B, C, h, w]`` latents.

    >>> lat = torch.zeros(2, 4, 8, 8)
    >>> latent_rgb_preview(lat, LATENT_RGB["sd"]["factors"], [0, 0, 0], 16).shape
    (2, 16, 16, 3)
    """
    weight = torch.as_tensor(factors, dtype=torch.float32, device=latents.device)
    offset = torch.as_tensor(bias, dtype=torch.float32, device=latents.device)
    if weight.shape[0] != latents.shape[1]:
        raise ValueError(f"latent_rgb factors have {weight.shape[0]} rows but latents have {latents.shape[1]} channels.")
    rgb = torch.einsum("bchw,cr->brhw", latents.float(), weight) + offset.view(1, 3, 1, 1)
    return resize_images((rgb + 1.0) / 2.0, size)


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
    kind: str,
    backbone: DiffusersBackbone,
    size: int,
    taesd: Any = None,
    local_files_only: bool = False,
) -> PreviewFn:
    """The preview function of ``kind`` for ``backbone``: latents in model space -> ``uint8 [B, size, size, 3]``.

    Args:
        kind: one of :data:`PREVIEWS`.
        backbone: the backbone whose latents are previewed.
        size: output side length in pixels.
        taesd: ``AutoencoderTiny`` (instance, folder or hub id) for ``kind="taesd"``; default: the backbone's.
        local_files_only: forwarded to ``from_pretrained``.
    """
    lookup(dict.fromkeys(PREVIEWS), kind, "preview")
    if kind == "none":
        return lambda latents: np.zeros((latents.shape[0], size, size, 3), dtype=np.uint8)
    if kind == "vae":
        return lambda latents: _decoded_preview(backbone, latents, size)
    if kind == "latent_rgb":
        coeffs = backbone.latent_rgb or lookup(LATENT_RGB, backbone.latent_family, "latent_rgb family")
        return lambda latents: latent_rgb_preview(
            backbone.to_spatial(latents), coeffs["factors"], coeffs.get("bias", [0, 0, 0]), size
        )
    source = taesd if taesd is not None else backbone.taesd
    if source is None:
        raise ValueError(f"preview='taesd' needs a tiny autoencoder: pass taesd=... (no default for {backbone.family}).")
    model = load_taesd(source, backbone.device, backbone.vae.dtype, local_files_only)

    @torch.inference_mode()
    def taesd_preview(latents: torch.Tensor) -> np.ndarray:
        spatial = backbone.to_spatial(latents).to(model.dtype)
        image = model.decode(spatial / model.config.scaling_factor, return_dict=False)[0]
        return resize_images((image.float() / 2 + 0.5), size)

    return taesd_preview


def _decoded_preview(backbone: DiffusersBackbone, latents: torch.Tensor, size: int) -> np.ndarray:
    images = torch.from_numpy(backbone.decode(latents)).permute(0, 3, 1, 2)
    return resize_images(images, size)

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
    # 16-channel flow-matching latents, from ComfyUI's comfy/latent_formats.py (classes SD3 and Flux), which
    # apply them to latents in model space ((z - shift_factor) * scaling_factor), as the samplers here hold them.
    # FLUX latents are unpacked (FluxBackbone.to_spatial) before the map applies.
    "sd3": {
        "factors": [
            [-0.0922, -0.0175, 0.0749],
            [0.0311, 0.0633, 0.0954],
            [0.1994, 0.0927, 0.0458],
            [0.0856, 0.0339, 0.0902],
            [0.0587, 0.0272, -0.0496],
            [-0.0006, 0.1104, 0.0309],
            [0.0978, 0.0306, 0.0427],
            [-0.0042, 0.1038, 0.1358],
            [-0.0194, 0.0020, 0.0669],
            [-0.0488, 0.0130, -0.0268],
            [0.0922, 0.0988, 0.0951],
            [-0.0278, 0.0524, -0.0542],
            [0.0332, 0.0456, 0.0895],
            [-0.0069, -0.0030, -0.0810],
            [-0.0596, -0.0465, -0.0293],
            [-0.1448, -0.1463, -0.1189],
        ],
        "bias": [0.2394, 0.2135, 0.1925],
    },
    "flux": {
        "factors": [
            [-0.0346, 0.0244, 0.0681],
            [0.0034, 0.0210, 0.0687],
            [0.0275, -0.0668, -0.0433],
            [-0.0174, 0.0160, 0.0617],
            [0.0859, 0.0721, 0.0329],
            [0.0004, 0.0383, 0.0115],
            [0.0405, 0.0861, 0.0915],
            [-0.0236, -0.0185, -0.0259],
            [-0.0245, 0.0250, 0.1180],
            [0.1008, 0.0755, -0.0421],
            [-0.0515, 0.0201, 0.0011],
            [0.0428, -0.0012, -0.0036],
            [0.0817, 0.0765, 0.0749],
            [-0.1264, -0.0522, -0.1103],
            [-0.0280, -0.0881, -0.0499],
            [-0.1262, -0.0982, -0.0778],
        ],
        "bias": [-0.0329, -0.0718, -0.0851],
    },
}

PreviewFn = Callable[[torch.Tensor], np.ndarray]


def resize_images(images: torch.Tensor, size: int) -> np.ndarray:
    """``float [B, 3, H, W]`` in [0, 1] to ``uint8 [B, size, size, 3]`` (bilinear, antialiased when shrinking)."""
    if images.shape[-2:] != (size, size):
        # Upscaling, the antialiased kernel equals plain bilinear (to float rounding) at a third of the cost.
        shrink = size < max(images.shape[-2:])
        images = F.interpolate(
            images.float(), size=(size, size), mode="bilinear", antialias=shrink, align_corners=False
        )
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
        raise ValueError(
            f"latent_rgb factors have {weight.shape[0]} rows but latents have {latents.shape[1]} channels."
        )
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
        raise ValueError(
            f"preview='taesd' needs a tiny autoencoder: pass taesd=... (no default for {backbone.family})."
        )
    model = load_taesd(source, backbone.device, backbone.vae.dtype, local_files_only)

    @torch.inference_mode()
    def taesd_preview(latents: torch.Tensor) -> np.ndarray:
        spatial = backbone.to_spatial(latents).to(model.dtype)
        # As a pipeline does with the tiny autoencoder as its vae: taesd3 / taef1 carry their family's shift.
        shift = getattr(model.config, "shift_factor", None) or 0.0
        image = model.decode(spatial / model.config.scaling_factor + shift, return_dict=False)[0]
        return resize_images((image.float() / 2 + 0.5), size)

    return taesd_preview


def _decoded_preview(backbone: DiffusersBackbone, latents: torch.Tensor, size: int) -> np.ndarray:
    images = torch.from_numpy(backbone.decode(latents)).permute(0, 3, 1, 2)
    return resize_images(images, size)

"""Backbones: a diffusers pipeline per family behind one resumable interface (see :mod:`.base`).

``BACKBONES`` maps a name to a :class:`BackboneEntry`: either a factory that builds a pipeline in
process (``tiny``), a folder shipped inside this package (``toy-shapes``) or a public hub id. Anything
else passed as ``backbone=`` is a local folder or hub id of a diffusers pipeline, or a loaded pipeline.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from promptloop_env.backbones.base import DiffusersBackbone, PromptEmbedding, Trajectory
from promptloop_env.registry import resolve

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BackboneEntry:
    """A named backbone.

    Attributes:
        source: ``"module:factory"`` (builds a pipeline), ``"package:<relative folder>"`` or a hub id.
        description: one line for users.
        options: keyword arguments for the family's backbone class (e.g. ``default_guidance_scale``).
    """

    source: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)


BACKBONES: dict[str, BackboneEntry] = {
    "tiny": BackboneEntry(
        "promptloop_env.backbones.tiny:tiny_stable_diffusion_pipeline",
        "random-weight StableDiffusionPipeline built in-process (64x64), for tests and benchmarks",
    ),
    "toy-shapes": BackboneEntry(
        "package:toy/assets/toy-shapes",
        "the embedded toy world: a small StableDiffusionPipeline trained on procedurally drawn shapes",
        {"default_guidance_scale": 1.0, "default_prompts": "toy-train"},
    ),
    "sd15": BackboneEntry(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "Stable Diffusion 1.5 (512x512)",
        {"default_guidance_scale": 7.5},
    ),
    "sd21": BackboneEntry(
        "stabilityai/stable-diffusion-2-1",
        "Stable Diffusion 2.1 (768x768, v-prediction)",
        {"default_guidance_scale": 7.5},
    ),
    # Other families. Guidance defaults are each model card's; pass num_inference_steps to the env (the cards
    # recommend: sdxl 30-50, sdxl-turbo 1-4, sd35-medium 40, sd35-large 28, sd35-large-turbo 4, flux-dev 28-50,
    # flux-schnell 1-4). Large checkpoints take cpu_offload=True (enable_model_cpu_offload) on small accelerators.
    "sdxl": BackboneEntry(
        "stabilityai/stable-diffusion-xl-base-1.0",
        "Stable Diffusion XL base 1.0 (1024x1024)",
        {"default_guidance_scale": 5.0},
    ),
    "sdxl-turbo": BackboneEntry(
        "stabilityai/sdxl-turbo", "SDXL-Turbo (512x512, 1-4 steps, no guidance)", {"default_guidance_scale": 0.0}
    ),
    "sd3-medium": BackboneEntry(
        "stabilityai/stable-diffusion-3-medium-diffusers",
        "Stable Diffusion 3 medium (1024x1024)",
        {"default_guidance_scale": 7.0},
    ),
    "sd35-medium": BackboneEntry(
        "stabilityai/stable-diffusion-3.5-medium",
        "Stable Diffusion 3.5 medium (1024x1024)",
        {"default_guidance_scale": 4.5},
    ),
    "sd35-large": BackboneEntry(
        "stabilityai/stable-diffusion-3.5-large",
        "Stable Diffusion 3.5 large (1024x1024)",
        {"default_guidance_scale": 3.5},
    ),
    "sd35-large-turbo": BackboneEntry(
        "stabilityai/stable-diffusion-3.5-large-turbo",
        "Stable Diffusion 3.5 large turbo (1024x1024, 4 steps, no guidance)",
        {"default_guidance_scale": 0.0},
    ),
    "flux-dev": BackboneEntry(
        "black-forest-labs/FLUX.1-dev",
        "FLUX.1 [dev] (1024x1024, guidance-distilled, gated on the hub)",
        {"default_guidance_scale": 3.5},
    ),
    "flux-schnell": BackboneEntry(
        "black-forest-labs/FLUX.1-schnell",
        "FLUX.1 [schnell] (1024x1024, 1-4 steps, no guidance)",
        {"default_guidance_scale": 0.0},
    ),
    "tiny-sdxl": BackboneEntry(
        "promptloop_env.backbones.tiny:tiny_stable_diffusion_xl_pipeline",
        "random-weight StableDiffusionXLPipeline built in-process (64x64), for tests and benchmarks",
    ),
    "tiny-sd3": BackboneEntry(
        "promptloop_env.backbones.tiny:tiny_stable_diffusion_3_pipeline",
        "random-weight StableDiffusion3Pipeline built in-process (64x64, 16 latent channels), for tests",
    ),
    "tiny-flux": BackboneEntry(
        "promptloop_env.backbones.tiny:tiny_flux_pipeline",
        "random-weight FluxPipeline built in-process (64x64, 16 latent channels), for tests and benchmarks",
    ),
}

# family name -> "module:BackboneClass", matched against the pipeline's class name.
FAMILIES: dict[str, str] = {
    "StableDiffusionPipeline": "promptloop_env.backbones.stable_diffusion:StableDiffusionBackbone",
    "StableDiffusionXLPipeline": "promptloop_env.backbones.sdxl:StableDiffusionXLBackbone",
    "StableDiffusion3Pipeline": "promptloop_env.backbones.sd3:StableDiffusion3Backbone",
    "FluxPipeline": "promptloop_env.backbones.flux:FluxBackbone",
}

_LOADED: weakref.WeakValueDictionary[tuple, DiffusersBackbone] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def _load_pipeline(source: str, device: Any, torch_dtype: torch.dtype | None, local_files_only: bool) -> Any:
    from diffusers import DiffusionPipeline

    if source.startswith("package:"):
        folder = PACKAGE_ROOT / source.removeprefix("package:")
        if not (folder / "model_index.json").exists():
            raise FileNotFoundError(
                f"The packaged backbone folder {folder} is missing; reinstall promptloop or train it with "
                "`python -m promptloop_env.toy.train`."
            )
        source = str(folder)
    if ":" in source and not os.path.exists(source) and "/" not in source.split(":")[0]:
        pipe = resolve(source)()
    else:
        # safetensors only, and never trust_remote_code: a hub folder with only pickles fails here.
        pipe = DiffusionPipeline.from_pretrained(
            source,
            torch_dtype=torch_dtype,
            use_safetensors=True,
            local_files_only=local_files_only,
            **absent_components(source, local_files_only),
        )
        pipe.set_progress_bar_config(disable=True)
    if torch_dtype is not None:
        pipe = pipe.to(dtype=torch_dtype)
    if device is not None:
        pipe = pipe.to(device)
    return pipe


def absent_components(source: str, local_files_only: bool = False) -> dict[str, None]:
    """``{name: None}`` for each component that a pipeline folder or hub id records as absent.

    A pipeline saved without an optional model (an SD3 folder without T5: ``text_encoder_3``, ``tokenizer_3``)
    lists it as ``[null, null]`` in ``model_index.json``; ``from_pretrained`` loads such a folder only when told
    ``name=None`` for each of them.
    """
    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(source, local_files_only=local_files_only)
    return {
        name: None
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, (list, tuple)) and list(value) == [None, None]
    }


def wrap_pipeline(pipe: Any, **options: Any) -> DiffusersBackbone:
    """The backbone for a loaded diffusers pipeline, chosen by its class.

    Raises:
        TypeError: the pipeline's family is not supported (the message lists those that are).
    """
    for cls in type(pipe).__mro__:
        if cls.__name__ in FAMILIES:
            return resolve(FAMILIES[cls.__name__])(pipe, **options)
    raise TypeError(f"Unsupported pipeline class {type(pipe).__name__}; supported: {', '.join(sorted(FAMILIES))}.")


def load_backbone(
    backbone: str | Any,
    device: str | torch.device | None = None,
    torch_dtype: torch.dtype | None = None,
    local_files_only: bool = False,
    **options: Any,
) -> DiffusersBackbone:
    """A backbone from a registry name, a local folder, a hub id, a loaded pipeline or a backbone.

    Loaded backbones are shared: asking twice for the same name, device and dtype returns the same
    object (weights are never copied), while every trajectory gets its own scheduler and generator.
    """
    if isinstance(backbone, DiffusersBackbone):
        return backbone
    if not isinstance(backbone, str):
        if hasattr(backbone, "components") and hasattr(backbone, "scheduler"):
            if device is not None or torch_dtype is not None:
                backbone = backbone.to(device=device, dtype=torch_dtype)
            return wrap_pipeline(backbone, **options)
        raise TypeError(
            "backbone must be a registered name, a folder or hub id of a diffusers pipeline, or a loaded "
            f"DiffusionPipeline; got {type(backbone).__name__}."
        )
    entry = BACKBONES.get(backbone)
    if entry is None and not (os.path.isdir(backbone) or backbone.count("/") == 1):
        raise ValueError(
            f"Unknown backbone {backbone!r}. Valid names: {', '.join(sorted(BACKBONES))}; "
            "or pass a local folder, a hub id (owner/name) or a loaded diffusers pipeline."
        )
    key = (backbone, str(device), str(torch_dtype), tuple(sorted(options.items())))
    with _LOCK:
        loaded = _LOADED.get(key)
        if loaded is None:
            source = entry.source if entry else backbone
            pipe = _load_pipeline(source, device, torch_dtype, local_files_only)
            loaded = wrap_pipeline(pipe, **{**(entry.options if entry else {}), **options})
            if source.startswith("package:"):
                _attach_fitted_latent_rgb(loaded, PACKAGE_ROOT / source.removeprefix("package:"))
            elif os.path.isdir(source):
                _attach_fitted_latent_rgb(loaded, Path(source))
            _LOADED[key] = loaded
    return loaded


def _attach_fitted_latent_rgb(backbone: DiffusersBackbone, folder: Path) -> None:
    import json

    path = folder / "latent_rgb.json"
    if backbone.latent_rgb is None and path.exists():
        backbone.latent_rgb = json.loads(path.read_text())


__all__ = [
    "BACKBONES",
    "FAMILIES",
    "BackboneEntry",
    "DiffusersBackbone",
    "PromptEmbedding",
    "Trajectory",
    "load_backbone",
    "wrap_pipeline",
]

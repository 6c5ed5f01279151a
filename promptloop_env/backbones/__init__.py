"""Backbones: a diffusers pipeline per family behind one resumable interface (see :mod:`.base`).

``BACKBONES`` (a :class:`~promptloop_env.registry.Registry`) maps a name to a typed entry (:mod:`.entries`): a
:class:`PipelineFactory` that builds a pipeline in process (``tiny``), a :class:`PackageFolder` shipped inside this
package (``toy-shapes``, registered by its toy world) or a :class:`HubModel`. Anything else passed as
``backbone=`` is a local folder or hub id of a diffusers pipeline, or a loaded pipeline. The family that runs a
pipeline is found by its class among :func:`families`, where each family class registers itself in ``FAMILIES``
(a new family is one module of this package).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import torch

from promptloop_env.backbones import tiny
from promptloop_env.backbones.base import FAMILIES, DiffusersBackbone, LatentRGB, PromptEmbedding, Trajectory
from promptloop_env.backbones.entries import (
    PACKAGE_ROOT,
    BackboneEntry,
    HubModel,
    LocalFolder,
    PackageFolder,
    PipelineFactory,
)
from promptloop_env.registry import Registry

BACKBONES: Registry[BackboneEntry] = Registry(
    "backbone", hint="Or pass a local folder, a hub id (owner/name) or a loaded diffusers pipeline."
)
"""The named backbones: a typed entry (:mod:`.entries`) per name. The toy worlds register theirs
(:mod:`promptloop_env.toy`); register your own with ``BACKBONES.register("name", HubModel("owner/name"))``."""

# Guidance defaults are each family's pipeline default unless the model card says otherwise (then an option
# here). Pass num_inference_steps to the env (the cards recommend: sdxl 30-50, sdxl-turbo 1-4, sd35-medium 40,
# sd35-large 28, sd35-large-turbo 4, flux-dev 28-50, flux-schnell 1-4). Large checkpoints take cpu_offload=True
# (enable_model_cpu_offload) on small accelerators.
_NO_GUIDANCE = {"default_guidance_scale": 0.0}
for _name, _entry in {
    "sd15": HubModel("stable-diffusion-v1-5/stable-diffusion-v1-5", description="Stable Diffusion 1.5 (512x512)"),
    "sd21": HubModel("stabilityai/stable-diffusion-2-1", description="Stable Diffusion 2.1 (768x768, v-prediction)"),
    "sdxl": HubModel(
        "stabilityai/stable-diffusion-xl-base-1.0", description="Stable Diffusion XL base 1.0 (1024x1024)"
    ),
    "sdxl-turbo": HubModel(
        "stabilityai/sdxl-turbo", description="SDXL-Turbo (512x512, 1-4 steps, no guidance)", options=_NO_GUIDANCE
    ),
    "sd3-medium": HubModel(
        "stabilityai/stable-diffusion-3-medium-diffusers", description="Stable Diffusion 3 medium (1024x1024)"
    ),
    "sd35-medium": HubModel(
        "stabilityai/stable-diffusion-3.5-medium",
        description="Stable Diffusion 3.5 medium (1024x1024)",
        options={"default_guidance_scale": 4.5},
    ),
    "sd35-large": HubModel(
        "stabilityai/stable-diffusion-3.5-large",
        description="Stable Diffusion 3.5 large (1024x1024)",
        options={"default_guidance_scale": 3.5},
    ),
    "sd35-large-turbo": HubModel(
        "stabilityai/stable-diffusion-3.5-large-turbo",
        description="Stable Diffusion 3.5 large turbo (1024x1024, 4 steps, no guidance)",
        options=_NO_GUIDANCE,
    ),
    "flux-dev": HubModel(
        "black-forest-labs/FLUX.1-dev", description="FLUX.1 [dev] (1024x1024, guidance-distilled, gated on the hub)"
    ),
    "flux-schnell": HubModel(
        "black-forest-labs/FLUX.1-schnell",
        description="FLUX.1 [schnell] (1024x1024, 1-4 steps, no guidance)",
        options=_NO_GUIDANCE,
    ),
}.items():
    BACKBONES.register(_name, _entry)
for _name, (_build, _what) in {
    "tiny": (tiny.tiny_stable_diffusion_pipeline, "StableDiffusionPipeline (64x64), for tests and benchmarks"),
    "tiny-sdxl": (
        tiny.tiny_stable_diffusion_xl_pipeline,
        "StableDiffusionXLPipeline (64x64), for tests and benchmarks",
    ),
    "tiny-sd3": (
        tiny.tiny_stable_diffusion_3_pipeline,
        "StableDiffusion3Pipeline (64x64, 16 latent channels), for tests",
    ),
    "tiny-flux": (tiny.tiny_flux_pipeline, "FluxPipeline (64x64, 16 latent channels), for tests"),
}.items():
    BACKBONES.register(_name, PipelineFactory(_build, description=f"random-weight {_what}, built in-process"))

_LOADED: weakref.WeakValueDictionary[tuple, DiffusersBackbone] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def families() -> dict[str, type[DiffusersBackbone]]:
    """The registered backbone families, by name: :data:`~promptloop_env.backbones.base.FAMILIES`, filled.

    Each family module registers its class when imported; they import diffusers' pipelines, so the registry
    imports them on first read rather than with ``promptloop_env``.
    """
    return FAMILIES


def family_of(pipe: Any) -> type[DiffusersBackbone]:
    """The backbone family class that runs ``pipe``: the first class of its MRO that a family declares.

    Raises:
        TypeError: the pipeline's family is not supported (the message lists the pipeline classes that are).
    """
    by_pipeline = {family.pipeline_class: family for family in families().values()}
    for cls in type(pipe).__mro__:
        if cls in by_pipeline:
            return by_pipeline[cls]
    supported = ", ".join(sorted(cls.__name__ for cls in by_pipeline))
    raise TypeError(f"Unsupported pipeline class {type(pipe).__name__}; supported: {supported}.")


def wrap_pipeline(pipe: Any, **options: Any) -> DiffusersBackbone:
    """The backbone for a loaded diffusers pipeline, built by its family class with ``options``."""
    return family_of(pipe)(pipe, **options)


def backbone_entry(name: str) -> BackboneEntry:
    """The registry entry of ``name``, or the local folder or hub id that ``name`` is.

    A name that can only be a path (:func:`looks_like_path`) is a folder even when it does not exist, so that
    building it says "not found" rather than "unknown name".

    Raises:
        ValueError: ``name`` is neither a registered name, a folder nor a hub id (the message lists the names).
    """
    if name in BACKBONES:
        return BACKBONES[name]
    if os.path.isdir(name) or looks_like_path(name):
        return LocalFolder(name)  # a missing one says "not found" when it is built
    if name.count("/") == 1:
        return HubModel(name)
    raise BACKBONES.unknown(name)


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be a path (not a registry name or an ``owner/name`` hub id).

    >>> [looks_like_path(n) for n in ("./models/my-sd", "~/sd", "models/a/b", "owner/name", "sd15")]
    [True, True, True, False, False]
    """
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or name.endswith("/")


def place(pipe: Any, device: str | torch.device | None, torch_dtype: torch.dtype | None) -> Any:
    """``pipe`` in ``torch_dtype`` on ``device`` (each left as it is when None)."""
    if torch_dtype is not None:
        pipe = pipe.to(dtype=torch_dtype)
    if device is not None:
        pipe = pipe.to(device)
    return pipe


def load_backbone(
    backbone: str | Any,
    device: str | torch.device | None = None,
    torch_dtype: torch.dtype | None = None,
    local_files_only: bool = False,
    **options: Any,
) -> DiffusersBackbone:
    """A backbone from a registry name, a local folder, a hub id, a loaded pipeline or a backbone.

    Loaded backbones are shared: asking twice for the same name, device, dtype and options returns the same
    object (weights are never copied), while every trajectory gets its own scheduler and generator. With
    ``cpu_offload=True`` the pipeline stays where offloading puts it (``device`` is not applied).
    """
    if options.get("cpu_offload"):
        device = None
    if isinstance(backbone, DiffusersBackbone):
        return backbone
    if not isinstance(backbone, str):
        if hasattr(backbone, "components") and hasattr(backbone, "scheduler"):
            return wrap_pipeline(place(backbone, device, torch_dtype), **options)
        raise TypeError(
            "backbone must be a registered name, a folder or hub id of a diffusers pipeline, or a loaded "
            f"DiffusionPipeline; got {type(backbone).__name__}."
        )
    entry = backbone_entry(backbone)
    key = (backbone, str(device), str(torch_dtype), tuple(sorted(options.items())))
    with _LOCK:
        loaded = _LOADED.get(key)
        if loaded is None:
            pipe = place(entry.build(torch_dtype, local_files_only), device, torch_dtype)
            fitted = entry.fitted_latent_rgb()
            defaults = {"name": backbone, **({"latent_rgb": fitted} if fitted else {})}
            loaded = wrap_pipeline(pipe, **{**defaults, **entry.options, **options})
            _LOADED[key] = loaded
    return loaded


__all__ = [
    "BACKBONES",
    "PACKAGE_ROOT",
    "BackboneEntry",
    "DiffusersBackbone",
    "HubModel",
    "LatentRGB",
    "LocalFolder",
    "PackageFolder",
    "PipelineFactory",
    "PromptEmbedding",
    "Trajectory",
    "backbone_entry",
    "families",
    "family_of",
    "load_backbone",
    "wrap_pipeline",
]

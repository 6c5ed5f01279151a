"""Where a backbone's pipeline comes from: one entry type per kind of source.

A :data:`~promptloop_env.backbones.BACKBONES` entry is a :class:`PipelineFactory` (a function that builds the
pipeline in process), a :class:`PackageFolder` (a diffusers folder shipped inside this package) or a
:class:`HubModel` (a hub id); a ``backbone=`` string that names no entry is a :class:`LocalFolder` or a
:class:`HubModel`. Folders and hub ids load through ``DiffusionPipeline.from_pretrained`` with safetensors only
and never ``trust_remote_code``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from promptloop_env.backbones.base import LatentRGB
from promptloop_env.registry import resolve
from promptloop_env.weights import MissingWeightsError, hub_cache, load_cache_first

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
"""The folder of the ``promptloop_env`` package, which :class:`PackageFolder` paths are relative to."""


@dataclass(frozen=True, kw_only=True)
class BackboneEntry:
    """A backbone's source, its description and the options of its family's backbone class.

    Attributes:
        description: one line for users.
        options: keyword arguments for the family's backbone class where this model differs from its family
            (e.g. ``default_guidance_scale`` from the model card, ``default_prompts``).
    """

    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The source as one string, for messages: ``module:function``, ``package:<folder>``, a folder or a hub id."""
        raise NotImplementedError

    @property
    def folder(self) -> Path | None:
        """The local folder of the pipeline, if it has one."""
        return None

    def build(self, torch_dtype: torch.dtype | None, local_files_only: bool) -> Any:
        """The pipeline, on the CPU unless its source places it."""
        raise NotImplementedError

    def fitted_latent_rgb(self) -> LatentRGB | None:
        """The ``latent_rgb.json`` map fitted to this model and saved in its folder, if any."""
        path = self.folder / "latent_rgb.json" if self.folder is not None else None
        return LatentRGB.from_json(path) if path is not None and path.exists() else None


@dataclass(frozen=True)
class PipelineFactory(BackboneEntry):
    """A pipeline built in process by ``target``, a function with no required arguments."""

    target: Callable[[], Any]

    @property
    def source(self) -> str:
        target = resolve(self.target)  # a "module:function" string of older code still works
        return f"{target.__module__}:{target.__qualname__}"

    def build(self, torch_dtype: torch.dtype | None, local_files_only: bool) -> Any:
        return resolve(self.target)()


@dataclass(frozen=True)
class LocalFolder(BackboneEntry):
    """A diffusers pipeline folder (``model_index.json`` and its components' folders) on this machine."""

    path: str

    @property
    def source(self) -> str:
        return self.path

    @property
    def folder(self) -> Path:
        return Path(self.path)

    def build(self, torch_dtype: torch.dtype | None, local_files_only: bool) -> Any:
        if not self.folder.is_dir():
            raise FileNotFoundError(f"Backbone folder {self.path!r} not found (looked at {self.folder.resolve()}).")
        if not (self.folder / "model_index.json").is_file():
            raise FileNotFoundError(
                f"Backbone folder {self.path!r} is no diffusers pipeline: it has no model_index.json (save one with "
                "pipe.save_pretrained(folder))."
            )
        return from_pretrained(str(self.folder), torch_dtype, local_files_only=True)


@dataclass(frozen=True)
class PackageFolder(LocalFolder):
    """A diffusers pipeline folder shipped inside this package; ``path`` is relative to :data:`PACKAGE_ROOT`."""

    @property
    def source(self) -> str:
        return f"package:{self.path}"

    @property
    def folder(self) -> Path:
        return PACKAGE_ROOT / self.path

    def build(self, torch_dtype: torch.dtype | None, local_files_only: bool) -> Any:
        if not (self.folder / "model_index.json").exists():
            raise FileNotFoundError(
                f"The packaged backbone folder {self.folder} is missing; reinstall promptloop or train it with "
                "`python -m promptloop_env.toy.train`."
            )
        return super().build(torch_dtype, local_files_only)


@dataclass(frozen=True)
class HubModel(BackboneEntry):
    """A diffusers pipeline on the Hugging Face hub, by ``repo_id`` (``owner/name``)."""

    repo_id: str

    @property
    def source(self) -> str:
        return self.repo_id

    def build(self, torch_dtype: torch.dtype | None, local_files_only: bool) -> Any:
        def load(cached: bool) -> Any:
            return from_pretrained(self.repo_id, torch_dtype, local_files_only=cached)

        return load_cache_first(load, local_files_only, self._missing)

    def _missing(self, cause: OSError, offline: bool) -> MissingWeightsError:
        where = f"in the hub cache ({hub_cache()})"
        if offline:
            where += ", and may not download (local_files_only or HF_HUB_OFFLINE)"
        else:
            where += " or on the hub"
        return MissingWeightsError(
            f"Backbone {self.repo_id!r} cannot find its weights {where}: {cause}\n"
            f"To provide them, download them once with network access (`hf download {self.repo_id}`), or pass a "
            "local folder of a diffusers pipeline: backbone='path/to/folder'."
        )


def from_pretrained(source: str, torch_dtype: torch.dtype | None, local_files_only: bool) -> Any:
    """``DiffusionPipeline.from_pretrained`` with safetensors only, never ``trust_remote_code``.

    A pipeline saved without an optional model (an SD3 folder without T5: ``text_encoder_3``, ``tokenizer_3``)
    records it as ``[null, null]`` in ``model_index.json``; such components are passed as None, which is how
    ``from_pretrained`` accepts their absence.
    """
    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(source, local_files_only=local_files_only)
    absent = {
        name: None
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, (list, tuple)) and list(value) == [None, None]
    }
    # safetensors only, and never trust_remote_code: a hub folder with only pickles fails here.
    pipe = DiffusionPipeline.from_pretrained(
        source, torch_dtype=torch_dtype, use_safetensors=True, local_files_only=local_files_only, **absent
    )
    pipe.set_progress_bar_config(disable=True)  # the denoising bars; the env runs its own loop
    return pipe

"""Shared machinery of the model-based rewards: loading, safe checkpoint files, batching.

Every model-based reward is a :class:`ModelReward`: constructed cheaply, it imports its optional
dependencies and loads its weights at :meth:`ModelReward.load` (which :func:`~promptloop_env.rewards.make_reward`,
and so ``gym.make``, calls at once) or else at the first call, then scores ``uint8 [B, H, W, 3]`` images
against the user queries in batches under ``torch.inference_mode``. Loading looks in local folders and the
hub cache first, with no network; only when something is missing there, and the hub is not offline, does it
download. Whatever is still missing is one :class:`MissingWeightsError` naming every folder or hub id the
reward reads and how to provide them.

Checkpoints that are not in a transformers layout are read by :func:`load_state_dict_file`:
``.safetensors`` through safetensors, anything else through ``torch.load(weights_only=True)``,
which refuses pickled code and accepts only tensors and plain containers.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from gymnasium.error import DependencyNotInstalled
from PIL import Image

# MissingWeightsError, hub_offline and hub_unreachable live in promptloop_env.weights (backbones use them too);
# they are still importable from here.
from promptloop_env.weights import MissingWeightsError, hub_offline, hub_unreachable, load_cache_first  # noqa: F401

REWARDS_EXTRA = 'pip install "promptloop[rewards]"'


def require(module_name: str) -> ModuleType:
    """Import an optional dependency of the model-based rewards.

    Raises:
        DependencyNotInstalled: the module is missing; the message names the pip extra.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise DependencyNotInstalled(
            f"Model-based rewards need {module_name!r}, which is not installed. Install it with: {REWARDS_EXTRA}"
        ) from err


def resolve_file(pretrained: str | os.PathLike, filename: str, local_files_only: bool = False) -> str:
    """Path of ``filename`` inside a local folder, or downloaded from the hub repo ``pretrained``.

    ``pretrained`` may also be the file itself.

    Raises:
        FileNotFoundError: a local folder without the file.
    """
    path = os.fspath(pretrained)
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        candidate = os.path.join(path, filename)
        if not os.path.isfile(candidate):
            raise FileNotFoundError(f"{filename!r} not found in the local folder {path!r}.")
        return candidate
    hub = require("huggingface_hub")
    return hub.hf_hub_download(repo_id=path, filename=filename, local_files_only=local_files_only)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict safely: safetensors, or ``torch.load(weights_only=True)`` for ``.pt`` / ``.pth`` pickles.

    A checkpoint dict that wraps the weights as ``{"state_dict": ...}`` (HPSv2, Lightning) is unwrapped, and
    the ``module.`` prefix that DistributedDataParallel adds is stripped.
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path, device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path!r} does not hold a state dict of tensors.")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def check_loading_info(info: dict[str, Any], what: str) -> None:
    """Raise when ``from_pretrained(..., output_loading_info=True)`` left weights missing, unused or misshapen.

    transformers only warns; a converted checkpoint that does not fill the model exactly is a bug.
    """
    problems = {name: info.get(name) for name in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {name: sorted(map(str, keys)) for name, keys in problems.items() if keys}
    if problems:
        raise ValueError(f"The {what} checkpoint does not match the model: {problems}.")


def mlp_head(input_size: int) -> torch.nn.Sequential:
    """The linear score head shared by the LAION aesthetic predictor v2 and ImageReward.

    ``Linear(d, 1024) -> Dropout -> Linear(1024, 128) -> Dropout -> Linear(128, 64) -> Dropout -> Linear(64, 16)
    -> Linear(16, 1)``, with no nonlinearity (the upstream ``MLP.layers``), so its state-dict keys are
    ``0, 2, 4, 6, 7`` (``.weight`` / ``.bias``).
    """
    nn = torch.nn
    return nn.Sequential(
        nn.Linear(input_size, 1024),
        nn.Dropout(0.2),
        nn.Linear(1024, 128),
        nn.Dropout(0.2),
        nn.Linear(128, 64),
        nn.Dropout(0.1),
        nn.Linear(64, 16),
        nn.Linear(16, 1),
    )


def to_pil_images(images: np.ndarray) -> list[Image.Image]:
    """``uint8 [B, H, W, 3]`` array to a list of RGB PIL images (what the library processors expect)."""
    return [Image.fromarray(image) for image in images]


class ModelReward:
    """Base of the model-based rewards: weights loaded once, device and dtype, input checks, batching.

    Subclasses implement :meth:`_load` (import dependencies, read weights, with no network when asked),
    :meth:`_score` (one batch of PIL images and queries to a 1-D tensor of scores) and :meth:`sources`.

    Args:
        device: where the model runs; ``None`` picks CUDA when available, else the CPU.
        torch_dtype: the weights' dtype; ``None`` means float32. Score heads always run in float32.
        pretrained: hub id or local folder of the weights.
        local_files_only: never reach the hub; only use local folders or the hub cache.
        batch_size: the most images sent through the model at once.
        **kwargs: other reward-factory arguments, ignored.
    """

    dependencies: tuple[str, ...] = ("transformers", "huggingface_hub")

    def __init__(
        self,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | None = None,
        pretrained: str | os.PathLike = "",
        local_files_only: bool = False,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
        if torch_dtype is not None and not isinstance(torch_dtype, torch.dtype):
            raise TypeError(f"torch_dtype must be a torch.dtype or None; got {torch_dtype!r}.")
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.torch_dtype = torch_dtype or torch.float32
        self.pretrained = os.fspath(pretrained)
        self.local_files_only = local_files_only
        self.batch_size = batch_size
        self._loaded = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pretrained={self.pretrained!r}, device={str(self.device)!r})"

    def sources(self) -> dict[str, str]:
        """The folders, files or hub ids the reward reads, by constructor argument (for error messages)."""
        return {"pretrained": self.pretrained}

    def load(self) -> None:
        """Import the dependencies and load the weights now instead of at the first call.

        Local folders and the hub cache are tried first, with no network; the hub only when that fails,
        neither ``local_files_only`` nor ``HF_HUB_OFFLINE`` forbids it and one request shows it can be reached.

        Raises:
            DependencyNotInstalled: a dependency is missing; the message names the pip extra.
            MissingWeightsError: a weight file is missing; the message names each folder or hub id read.
        """
        if self._loaded:
            return
        for module_name in self.dependencies:
            require(module_name)
        load_cache_first(
            lambda offline_only: self._load(local_files_only=offline_only), self.local_files_only, self._missing
        )
        self._loaded = True

    def _missing(self, cause: OSError, offline: bool) -> MissingWeightsError:
        name, sources = type(self).__name__, self.sources()
        if offline:
            where = "in its local folders or the hub cache, and may not download (local_files_only or HF_HUB_OFFLINE)"
        else:
            where = "in its local folders, the hub cache or on the hub"
        hub_ids = list(dict.fromkeys(value for value in sources.values() if not os.path.exists(value)))
        fetch = f"download {', '.join(hub_ids)} once with network access (`hf download ID`), or " if hub_ids else ""
        return MissingWeightsError(
            f"{name} cannot find its weights {where}: {cause}\n"
            f"It reads {', '.join(f'{k}={v!r}' for k, v in sources.items())}. To provide them, {fetch}pass local "
            f"folders or files: reward={name}({', '.join(f'{k}=...' for k in sources)})."
        )

    def _load(self, local_files_only: bool) -> None:
        raise NotImplementedError

    def _score(self, images: list[Image.Image], queries: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: np.ndarray, queries: Sequence[str]) -> list[float]:
        """Score ``uint8 [B, H, W, 3]`` images against their ``B`` queries."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be a uint8 array [B, H, W, 3]; got {images.dtype} {images.shape}.")
        queries = list(queries)
        if len(queries) != len(images):
            raise ValueError(f"Got {len(images)} images but {len(queries)} queries.")
        self.load()
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                stop = start + self.batch_size
                batch = self._score(to_pil_images(images[start:stop]), queries[start:stop])
                scores.extend(batch.float().cpu().tolist())
        return scores

    def _pixels(self, pixel_values: Any) -> torch.Tensor:
        """Move processor output to the model's device and dtype."""
        return pixel_values.to(device=self.device, dtype=self.torch_dtype)

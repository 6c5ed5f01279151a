"""CLIP score: how well the image matches the query, ``max(100 * cos(image, text), 0)``."""

from __future__ import annotations

import os
from typing import Any

import torch
from PIL import Image

from promptloop_env.rewards.base import REWARDS
from promptloop_env.rewards.clip_common import load_clip_model, load_clip_processor, paired_cosine
from promptloop_env.rewards.model_base import ModelReward


@REWARDS.register("clip-score")
class ClipScore(ModelReward):
    """CLIP score of each image against its query (Hessel et al. 2021, as torchmetrics computes it).

    ``score = max(100 * cos(E_image, E_text), 0)`` with the projected, L2-normalised CLIP embeddings, per
    image-query pair (torchmetrics' ``CLIPScore`` and diffusers' evaluation guide use the same definition and,
    by default, the same ``openai/clip-vit-large-patch14`` weights). Queries longer than CLIP's 77-token window
    are truncated. Typical values for a matching pair are 25-35.

    Weights load through ``CLIPModel.from_pretrained`` / ``CLIPProcessor.from_pretrained`` (safetensors
    only by default).

    Args:
        pretrained: hub id or local folder of a transformers CLIP model and its processor.
        use_safetensors: passed to ``from_pretrained``; ``None`` also accepts ``pytorch_model.bin``.
        **kwargs: ``device``, ``torch_dtype``, ``local_files_only`` and ``batch_size`` of
            :class:`~promptloop_env.rewards.model_base.ModelReward`; others are ignored.
    """

    def __init__(
        self,
        pretrained: str | os.PathLike = "openai/clip-vit-large-patch14",
        use_safetensors: bool | None = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(pretrained=pretrained, **kwargs)
        self.use_safetensors = use_safetensors

    def _load(self, local_files_only: bool) -> None:
        self.processor = load_clip_processor(self.pretrained, local_files_only)
        self.model = load_clip_model(
            self.pretrained, self.device, self.torch_dtype, local_files_only, self.use_safetensors
        )

    def _score(self, images: list[Image.Image], queries: list[str]) -> torch.Tensor:
        return (100.0 * paired_cosine(self.model, self.processor, images, queries)).clamp(min=0.0)

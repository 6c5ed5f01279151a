"""PickScore: a CLIP-H model fine-tuned on Pick-a-Pic human preferences (Kirstain et al. 2023)."""

from __future__ import annotations

import os
from typing import Any

import torch
from PIL import Image

from promptloop_env.rewards.base import REWARDS
from promptloop_env.rewards.clip_common import load_clip_model, load_clip_processor, paired_cosine
from promptloop_env.rewards.model_base import ModelReward


@REWARDS.register("pickscore")
class PickScore(ModelReward):
    """PickScore of each image against its query: ``logit_scale.exp() * cos(E_image, E_text)``.

    As in the authors' reference snippet: the model ``yuvalkirstain/PickScore_v1`` (a transformers
    ``CLIPModel``) with the processor of the CLIP it was fine-tuned from,
    ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``; the score is the pair's CLIP logit (learned temperature times
    cosine), typically around 18-23. Queries are truncated to 77 tokens.

    Weights load through ``CLIPModel.from_pretrained``. ``use_safetensors=None`` (the default here)
    prefers ``model.safetensors`` and otherwise reads the repo's ``pytorch_model.bin``, which transformers
    loads with ``torch.load(weights_only=True)``; pass ``True`` to accept safetensors only.

    Args:
        pretrained: hub id or local folder of the PickScore ``CLIPModel``.
        processor: hub id or local folder of the ``CLIPProcessor``; ``None`` uses ``pretrained``.
        use_safetensors: passed to ``from_pretrained``.
        **kwargs: ``device``, ``torch_dtype``, ``local_files_only`` and ``batch_size`` of
            :class:`~promptloop_env.rewards.model_base.ModelReward`; others are ignored.
    """

    def __init__(
        self,
        pretrained: str | os.PathLike = "yuvalkirstain/PickScore_v1",
        processor: str | os.PathLike | None = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        use_safetensors: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(pretrained=pretrained, **kwargs)
        self.processor_path = os.fspath(processor) if processor is not None else self.pretrained
        self.use_safetensors = use_safetensors

    def sources(self) -> dict[str, str]:
        return {"pretrained": self.pretrained, "processor": self.processor_path}

    def _load(self, local_files_only: bool) -> None:
        self.processor = load_clip_processor(self.processor_path, local_files_only)
        self.model = load_clip_model(
            self.pretrained, self.device, self.torch_dtype, local_files_only, self.use_safetensors
        )

    def _score(self, images: list[Image.Image], queries: list[str]) -> torch.Tensor:
        return self.model.logit_scale.exp().float() * paired_cosine(self.model, self.processor, images, queries)

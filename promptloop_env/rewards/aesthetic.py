"""LAION aesthetic predictor v2: an MLP on CLIP ViT-L/14 image embeddings (Schuhmann et al.)."""

from __future__ import annotations

import os
from typing import Any

import torch
from PIL import Image

from promptloop_env.rewards.base import REWARDS
from promptloop_env.rewards.clip_common import image_embeddings, load_clip_model, load_clip_processor
from promptloop_env.rewards.model_base import ModelReward, load_state_dict_file, mlp_head, resolve_file


@REWARDS.register("aesthetic")
class LaionAesthetic(ModelReward):
    """LAION aesthetic score (about 1-10) of each image; the query is ignored.

    The "improved aesthetic predictor" ``sac+logos+ava1-l14-linearMSE``: the CLIP ViT-L/14 image embedding,
    L2-normalised, through a linear MLP head (:func:`~promptloop_env.rewards.model_base.mlp_head`, keys
    ``layers.{0,2,4,6,7}.{weight,bias}``). This is the reward of DDPO and TRL's DDPO example.

    Loading: the CLIP model through ``CLIPModel.from_pretrained`` (safetensors); the head is published only
    as a PyTorch pickle (``trl-lib/ddpo-aesthetic-predictor/aesthetic-model.pth``, the same weights as
    ``sac+logos+ava1-l14-linearMSE.pth``), so it is read with ``torch.load(weights_only=True)``, which loads
    tensors and refuses code; a ``.safetensors`` conversion of the head is read with safetensors.

    Args:
        pretrained: hub id or local folder of the CLIP ViT-L/14 model and processor.
        head: hub id, local folder or file of the MLP head; ``None`` looks for ``head_filename`` in
            ``pretrained`` when that is a local folder, else uses ``trl-lib/ddpo-aesthetic-predictor``.
        head_filename: the head's file name inside ``head``.
        **kwargs: ``device``, ``torch_dtype``, ``local_files_only`` and ``batch_size`` of
            :class:`~promptloop_env.rewards.model_base.ModelReward`; others are ignored.
    """

    default_head = "trl-lib/ddpo-aesthetic-predictor"

    def __init__(
        self,
        pretrained: str | os.PathLike = "openai/clip-vit-large-patch14",
        head: str | os.PathLike | None = None,
        head_filename: str = "aesthetic-model.pth",
        **kwargs: Any,
    ) -> None:
        super().__init__(pretrained=pretrained, **kwargs)
        if head is None:
            in_folder = os.path.isfile(os.path.join(self.pretrained, head_filename))
            head = self.pretrained if in_folder else self.default_head
        self.head_path = os.fspath(head)
        self.head_filename = head_filename

    def sources(self) -> dict[str, str]:
        return {"pretrained": self.pretrained, "head": self.head_path}

    def _load(self, local_files_only: bool) -> None:
        head_file = resolve_file(self.head_path, self.head_filename, local_files_only)
        self.processor = load_clip_processor(self.pretrained, local_files_only)
        self.model = load_clip_model(self.pretrained, self.device, self.torch_dtype, local_files_only)
        state = load_state_dict_file(head_file)
        state = {k.removeprefix("layers."): v for k, v in state.items()}
        self.head = mlp_head(self.model.config.projection_dim)
        self.head.load_state_dict(state)
        self.head.to(self.device).eval().requires_grad_(False)

    def _score(self, images: list[Image.Image], queries: list[str]) -> torch.Tensor:
        return self.head(image_embeddings(self.model, self.processor, images)).squeeze(-1)

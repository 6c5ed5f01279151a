"""HPSv2: Human Preference Score v2, an OpenCLIP ViT-H/14 fine-tuned on HPD v2 (Wu et al. 2023).

The checkpoint is an OpenCLIP state dict. OpenCLIP itself needs torchvision, so the weights are converted
to transformers' ``CLIPModel`` layout instead (:func:`open_clip_to_transformers`):

=========================================================  ============================================================
OpenCLIP key                                               transformers ``CLIPModel`` key
=========================================================  ============================================================
``token_embedding.weight``                                 ``text_model.embeddings.token_embedding.weight``
``positional_embedding``                                   ``text_model.embeddings.position_embedding.weight``
``transformer.resblocks.{i}.attn.in_proj_{weight,bias}``   ``text_model.encoder.layers.{i}.self_attn.{q,k,v}_proj.*``
                                                           (split in three along dim 0)
``transformer.resblocks.{i}.attn.out_proj.*``              ``text_model.encoder.layers.{i}.self_attn.out_proj.*``
``transformer.resblocks.{i}.ln_1.*`` / ``ln_2.*``          ``text_model.encoder.layers.{i}.layer_norm1.*`` / ``2``
``transformer.resblocks.{i}.mlp.c_fc.*`` / ``c_proj.*``    ``text_model.encoder.layers.{i}.mlp.fc1.*`` / ``fc2.*``
``ln_final.*``                                             ``text_model.final_layer_norm.*``
``text_projection`` ``[width, dim]``                       ``text_projection.weight`` ``[dim, width]`` (transposed)
``logit_scale``                                            ``logit_scale``
``visual.class_embedding``                                 ``vision_model.embeddings.class_embedding``
``visual.positional_embedding``                            ``vision_model.embeddings.position_embedding.weight``
``visual.conv1.weight``                                    ``vision_model.embeddings.patch_embedding.weight``
``visual.ln_pre.*`` / ``visual.ln_post.*``                 ``vision_model.pre_layrnorm.*`` / ``post_layernorm.*``
``visual.transformer.resblocks.{i}.*``                     ``vision_model.encoder.layers.{i}.*`` (as for the text)
``visual.proj`` ``[width, dim]``                           ``visual_projection.weight`` ``[dim, width]`` (transposed)
=========================================================  ============================================================

The architecture (widths, depths, heads, GELU) comes from the transformers config of the CLIP that HPSv2
was fine-tuned from, ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``, whose processor also gives the tokenizer and
the ``Resize(224, bicubic) + CenterCrop + CLIP mean/std`` preprocessing of HPSv2's ``preprocess_val``.
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch
from PIL import Image

from promptloop_env.rewards.base import REWARDS
from promptloop_env.rewards.clip_common import load_clip_model, load_clip_processor, paired_cosine
from promptloop_env.rewards.model_base import ModelReward, load_state_dict_file, require, resolve_file

_BLOCK_RENAMES = {
    "attn.out_proj": "self_attn.out_proj",
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_TOP_RENAMES = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
}
_TRANSPOSED = {"text_projection": "text_projection.weight", "visual.proj": "visual_projection.weight"}
_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")


def open_clip_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert an OpenCLIP ViT state dict (standard text tower) to transformers ``CLIPModel`` keys.

    Raises:
        KeyError: a key outside the table in the module docstring (for example a custom text tower).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _TOP_RENAMES:
            out[_TOP_RENAMES[key]] = value
        elif key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.t().contiguous()
        elif match := _BLOCK.match(key):
            tower = "vision_model" if match.group(1) else "text_model"
            prefix, rest = f"{tower}.encoder.layers.{match.group(2)}.", match.group(3)
            if rest.startswith("attn.in_proj_"):
                kind = rest.removeprefix("attn.in_proj_")
                for name, chunk in zip("qkv", value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}self_attn.{name}_proj.{kind}"] = chunk.contiguous()
                continue
            module, _, param = rest.rpartition(".")
            if module not in _BLOCK_RENAMES:
                raise KeyError(f"Unexpected OpenCLIP key {key!r}.")
            out[f"{prefix}{_BLOCK_RENAMES[module]}.{param}"] = value
        else:
            raise KeyError(f"Unexpected OpenCLIP key {key!r}: not a standard OpenCLIP ViT checkpoint.")
    return out


def transformers_to_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`open_clip_to_transformers` (used to build test stand-ins in OpenCLIP layout)."""
    top = {v: k for k, v in _TOP_RENAMES.items()}
    transposed = {v: k for k, v in _TRANSPOSED.items()}
    blocks = {v: k for k, v in _BLOCK_RENAMES.items()}
    layer = re.compile(r"^(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
    out: dict[str, torch.Tensor] = {}
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key in top:
            out[top[key]] = value
        elif key in transposed:
            out[transposed[key]] = value.t().contiguous()
        elif match := layer.match(key):
            tower, index, module, param = match.groups()
            prefix = f"{'visual.' if tower == 'vision_model' else ''}transformer.resblocks.{index}."
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                pending.setdefault(f"{prefix}attn.in_proj_{param}", {})[module[10]] = value
            else:
                out[f"{prefix}{blocks[module]}.{param}"] = value
        else:
            raise KeyError(f"Unexpected transformers CLIP key {key!r}.")
    for key, parts in pending.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


@REWARDS.register("hpsv2")
class HPSv2(ModelReward):
    """HPSv2 score of each image against its query: ``cos(E_image, E_text)`` of the fine-tuned CLIP, about 0.2-0.35.

    As HPSv2's ``score.py``: the diagonal of ``image_features @ text_features.T`` with normalised features.
    The checkpoint (``xswu/HPSv2``: ``HPS_v2.1_compressed.pt`` by default, or ``HPS_v2_compressed.pt``) is a
    PyTorch pickle of ``{"state_dict": ...}``: it is read with ``torch.load(weights_only=True)`` (tensors only,
    no code), or from a ``.safetensors`` conversion, then converted as the module docstring shows and loaded
    through ``CLIPModel.from_pretrained(None, config=..., state_dict=...)``.

    Args:
        pretrained: hub id, local folder or file of the HPSv2 checkpoint.
        filename: the checkpoint's file name inside ``pretrained``.
        clip_config: hub id or local folder with the base CLIP's ``config.json`` and processor files (its
            weights are not read).
        **kwargs: ``device``, ``torch_dtype``, ``local_files_only`` and ``batch_size`` of
            :class:`~promptloop_env.rewards.model_base.ModelReward`; others are ignored.
    """

    def __init__(
        self,
        pretrained: str | os.PathLike = "xswu/HPSv2",
        filename: str = "HPS_v2.1_compressed.pt",
        clip_config: str | os.PathLike = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        **kwargs: Any,
    ) -> None:
        super().__init__(pretrained=pretrained, **kwargs)
        self.filename = filename
        self.clip_config = os.fspath(clip_config)

    def sources(self) -> dict[str, str]:
        return {"pretrained": self.pretrained, "clip_config": self.clip_config}

    def _load(self, local_files_only: bool) -> None:
        transformers = require("transformers")
        config = transformers.CLIPConfig.from_pretrained(self.clip_config, local_files_only=local_files_only)
        self.processor = load_clip_processor(self.clip_config, local_files_only)
        checkpoint = resolve_file(self.pretrained, self.filename, local_files_only)
        state = open_clip_to_transformers(load_state_dict_file(checkpoint))
        self.model = load_clip_model(None, self.device, self.torch_dtype, config=config, state_dict=state)

    def _score(self, images: list[Image.Image], queries: list[str]) -> torch.Tensor:
        return paired_cosine(self.model, self.processor, images, queries)

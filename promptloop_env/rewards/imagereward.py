"""ImageReward (Xu et al. 2023): a BLIP image-grounded text encoder with a score head, rebuilt on transformers.

The upstream ``image-reward`` package pins old libraries and unpickles its checkpoint with plain
``torch.load``. Here the same architecture is assembled from transformers' BLIP components and the public
``ImageReward.pt`` state dict is read with ``torch.load(weights_only=True)`` (tensors only, no code), or
from a ``.safetensors`` conversion, then renamed (:func:`imagereward_to_transformers`):

=================================================  ==============================================================
``ImageReward.pt`` key                             loaded into
=================================================  ==============================================================
``blip.visual_encoder.cls_token``                  ``BlipVisionModel``: ``embeddings.class_embedding``
``blip.visual_encoder.pos_embed``                  ``embeddings.position_embedding``
``blip.visual_encoder.patch_embed.proj.*``         ``embeddings.patch_embedding.*``
``blip.visual_encoder.blocks.{i}.norm1.*``         ``encoder.layers.{i}.layer_norm1.*`` (``norm2`` -> ``layer_norm2``)
``blip.visual_encoder.blocks.{i}.attn.qkv.*``      ``encoder.layers.{i}.self_attn.qkv.*``
``blip.visual_encoder.blocks.{i}.attn.proj.*``     ``encoder.layers.{i}.self_attn.projection.*``
``blip.visual_encoder.blocks.{i}.mlp.fc{1,2}.*``   ``encoder.layers.{i}.mlp.fc{1,2}.*``
``blip.visual_encoder.norm.*``                     ``post_layernorm.*``
``blip.text_encoder.<name>``                       ``BlipTextModel`` (no pooler): ``<name>``, unchanged (BLIP's
                                                   ``med.BertModel`` and transformers' ``BlipTextModel`` share names,
                                                   ``crossattention`` included)
``mlp.layers.{0,2,4,6,7}.*``                       the score head :func:`~promptloop_env.rewards.model_base.mlp_head`
``blip.vision_proj.*``, ``blip.text_proj.*``,      dropped: unused by the score (retrieval projections, a buffer)
``blip.text_encoder.embeddings.position_ids``
=================================================  ==============================================================

The vision tower's shape (width, depth, patch, image size) is read from the weights; its heads are
``width // 64`` (ViT-B: 12, ViT-L: 16) and its LayerNorm eps is BLIP's 1e-6. The text tower's shape comes
from the ``med_config.json`` shipped next to the checkpoint, with cross-attention of width equal to the
vision width.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import torch
from PIL import Image

from promptloop_env.rewards.base import REWARDS
from promptloop_env.rewards.clip_common import clip_image_processor
from promptloop_env.rewards.model_base import (
    ModelReward,
    check_loading_info,
    load_state_dict_file,
    mlp_head,
    require,
    resolve_file,
)

# The upstream score: (mlp(features) - mean) / std, with these constants from ImageReward.py.
IMAGEREWARD_MEAN = 0.16717362830052426
IMAGEREWARD_STD = 1.0333394966054072
MAX_QUERY_TOKENS = 35  # the upstream tokenizer call: padding="max_length", truncation=True, max_length=35

# (upstream name under blip.visual_encoder., BlipVisionModel name); "{i}" is a block index, a trailing "."
# marks a prefix (weight / bias follow).
_VISION_KEYS = [
    ("cls_token", "embeddings.class_embedding"),
    ("pos_embed", "embeddings.position_embedding"),
    ("patch_embed.proj.", "embeddings.patch_embedding."),
    ("blocks.{i}.norm1.", "encoder.layers.{i}.layer_norm1."),
    ("blocks.{i}.norm2.", "encoder.layers.{i}.layer_norm2."),
    ("blocks.{i}.attn.qkv.", "encoder.layers.{i}.self_attn.qkv."),
    ("blocks.{i}.attn.proj.", "encoder.layers.{i}.self_attn.projection."),
    ("blocks.{i}.mlp.fc1.", "encoder.layers.{i}.mlp.fc1."),
    ("blocks.{i}.mlp.fc2.", "encoder.layers.{i}.mlp.fc2."),
    ("norm.", "post_layernorm."),
]
_DROPPED = re.compile(r"^blip\.(vision_proj|text_proj)\.|^blip\.text_encoder\.embeddings\.position_ids$")


def _rename_vision(key: str, to_transformers: bool = True) -> str:
    for upstream, ours in _VISION_KEYS:
        source, target = (upstream, ours) if to_transformers else (ours, upstream)
        pattern = r"(\d+)".join(re.escape(part) for part in source.split("{i}"))
        match = re.match(pattern if source.endswith(".") else pattern + "$", key)
        if match:
            renamed = target.replace("{i}", match.group(1)) if match.groups() else target
            return renamed + key[match.end() :]
    raise KeyError(f"Unexpected ImageReward vision key {key!r}.")


def imagereward_to_transformers(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split and rename an ``ImageReward.pt`` state dict into (vision, text, head) state dicts.

    Raises:
        KeyError: a key outside the table in the module docstring.
    """
    vision, text, head = {}, {}, {}
    for key, value in state.items():
        if _DROPPED.search(key):
            continue
        if key.startswith("blip.visual_encoder."):
            vision[_rename_vision(key.removeprefix("blip.visual_encoder."))] = value
        elif key.startswith("blip.text_encoder."):
            text[key.removeprefix("blip.text_encoder.")] = value
        elif key.startswith("mlp.layers."):
            head[key.removeprefix("mlp.layers.")] = value
        else:
            raise KeyError(f"Unexpected ImageReward key {key!r}.")
    return vision, text, head


def transformers_to_imagereward(
    vision: dict[str, torch.Tensor], text: dict[str, torch.Tensor], head: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`imagereward_to_transformers` (used to build test stand-ins in upstream layout)."""
    state = {f"blip.visual_encoder.{_rename_vision(k, to_transformers=False)}": v for k, v in vision.items()}
    state.update({f"blip.text_encoder.{k}": v for k, v in text.items()})
    state.update({f"mlp.layers.{k}": v for k, v in head.items()})
    return state


def _vision_config_kwargs(vision: dict[str, torch.Tensor]) -> dict[str, object]:
    width = vision["embeddings.class_embedding"].shape[-1]
    patch = vision["embeddings.patch_embedding.weight"].shape[-1]
    grid = round((vision["embeddings.position_embedding"].shape[1] - 1) ** 0.5)
    depth = 1 + max(int(k.split(".")[2]) for k in vision if k.startswith("encoder.layers."))
    return {
        "hidden_size": width,
        "intermediate_size": vision["encoder.layers.0.mlp.fc1.weight"].shape[0],
        "num_hidden_layers": depth,
        "num_attention_heads": max(1, width // 64),
        "image_size": grid * patch,
        "patch_size": patch,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
    }


def _text_config_kwargs(med_config: dict, encoder_width: int) -> dict[str, object]:
    names = (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "max_position_embeddings",
        "hidden_act",
        "layer_norm_eps",
        "pad_token_id",
        "bos_token_id",
    )
    kwargs = {name: med_config[name] for name in names if name in med_config}
    # transformers builds BLIP's cross-attention only for is_decoder configs; the forward pass still runs the
    # bidirectional encoder ("multimodal" mode of BLIP's med.BertModel) because it passes is_decoder=False.
    # BLIP's tokenizer appends [DEC] (its bos) then [ENC] to BERT's vocabulary.
    kwargs.setdefault("bos_token_id", med_config.get("bos_token_id", kwargs.get("vocab_size", 30524) - 2))
    return {**kwargs, "encoder_hidden_size": encoder_width, "is_decoder": True}


@REWARDS.register("imagereward")
class ImageRewardScore(ModelReward):
    """ImageReward score of each image against its query (a standardised preference logit, about -2 to 2).

    As upstream ``ImageReward.score``: the image goes through the BLIP ViT; the query (BERT-uncased tokens,
    padded and truncated to 35) through the BLIP text encoder cross-attending to the image tokens; the
    ``[CLS]`` feature through the MLP head, then ``(r - 0.16717) / 1.03334``. Images are preprocessed as
    upstream: shortest edge to 224 (bicubic), centre crop, CLIP mean/std. See the module docstring for how
    the checkpoint is loaded safely and which keys map where.

    Args:
        pretrained: hub id, local folder or file of the checkpoint (``THUDM/ImageReward``).
        filename: the checkpoint's file name inside ``pretrained``.
        med_config: hub id, folder or file of BLIP's ``med_config.json``; ``None`` uses ``pretrained``'s folder.
        tokenizer: hub id or folder of the BERT tokenizer; ``None`` uses ``pretrained`` when it is a local
            folder holding tokenizer files, else ``google-bert/bert-base-uncased`` (as upstream).
        **kwargs: ``device``, ``torch_dtype``, ``local_files_only`` and ``batch_size`` of
            :class:`~promptloop_env.rewards.model_base.ModelReward`; others are ignored.
    """

    default_tokenizer = "google-bert/bert-base-uncased"

    def __init__(
        self,
        pretrained: str | os.PathLike = "THUDM/ImageReward",
        filename: str = "ImageReward.pt",
        med_config: str | os.PathLike | None = None,
        tokenizer: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(pretrained=pretrained, **kwargs)
        self.filename = filename
        folder = None  # the local folder of the checkpoint, if any
        if os.path.isdir(self.pretrained):
            folder = self.pretrained
        elif os.path.isfile(self.pretrained):
            folder = os.path.dirname(os.path.abspath(self.pretrained))
        self.med_config_path = os.fspath(med_config) if med_config is not None else (folder or self.pretrained)
        if tokenizer is None:
            local = folder and any(os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "vocab.txt"))
            tokenizer = folder if local else self.default_tokenizer
        self.tokenizer_path = os.fspath(tokenizer)

    def sources(self) -> dict[str, str]:
        return {"pretrained": self.pretrained, "med_config": self.med_config_path, "tokenizer": self.tokenizer_path}

    def _load(self, local_files_only: bool) -> None:
        transformers = require("transformers")
        # Every file is found before the checkpoint is read, so that a missing one fails fast.
        checkpoint = resolve_file(self.pretrained, self.filename, local_files_only)
        with open(resolve_file(self.med_config_path, "med_config.json", local_files_only)) as f:
            med_config = json.load(f)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            self.tokenizer_path, local_files_only=local_files_only
        )
        # BLIP's init_tokenizer adds these two; plain queries never produce them, but ids stay as upstream.
        self.tokenizer.add_tokens(["[DEC]", "[ENC]"], special_tokens=True)
        vision_state, text_state, head_state = imagereward_to_transformers(load_state_dict_file(checkpoint))
        vision_config = transformers.BlipVisionConfig(**_vision_config_kwargs(vision_state))
        text_config = transformers.BlipTextConfig(**_text_config_kwargs(med_config, vision_config.hidden_size))
        dtype = {"dtype": self.torch_dtype}
        self.vision, info = transformers.BlipVisionModel.from_pretrained(
            None, config=vision_config, state_dict=vision_state, output_loading_info=True, **dtype
        )
        check_loading_info(info, "ImageReward vision")
        self.text, info = transformers.BlipTextModel.from_pretrained(
            None, config=text_config, state_dict=text_state, add_pooling_layer=False, output_loading_info=True, **dtype
        )
        check_loading_info(info, "ImageReward text")
        self.head = mlp_head(text_config.hidden_size)
        self.head.load_state_dict(head_state)
        for module in (self.vision, self.text, self.head):
            module.to(self.device).eval().requires_grad_(False)
        self.image_processor = clip_image_processor(vision_config.image_size)

    def _score(self, images: list[Image.Image], queries: list[str]) -> torch.Tensor:
        pixels = self._pixels(self.image_processor(images=images, return_tensors="pt")["pixel_values"])
        image_embeds = self.vision(pixel_values=pixels).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        tokens = self.tokenizer(
            queries, padding="max_length", truncation=True, max_length=MAX_QUERY_TOKENS, return_tensors="pt"
        )
        text = self.text(
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            is_decoder=False,
        )
        features = text.last_hidden_state[:, 0, :].float()
        return ((self.head(features) - IMAGEREWARD_MEAN) / IMAGEREWARD_STD).squeeze(-1)

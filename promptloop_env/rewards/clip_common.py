"""CLIP plumbing shared by the CLIP-based rewards: loading, preprocessing, normalised embeddings.

Everything goes through transformers' ``CLIPModel`` / ``CLIPProcessor``. Without torchvision, transformers
picks its PIL image processors, which resize (shortest edge, bicubic), centre-crop and normalise as the
original CLIP ``preprocess`` does.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from PIL import Image

from promptloop_env.rewards.model_base import check_loading_info, require

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_image_processor(image_size: int) -> Any:
    """A CLIP-style PIL image processor: shortest edge to ``image_size`` (bicubic), centre crop, CLIP mean/std.

    It reproduces the ``Resize(n, BICUBIC), CenterCrop(n), ToTensor(), Normalize(CLIP mean/std)`` transform of
    the original CLIP, BLIP and ImageReward code.
    """
    transformers = require("transformers")
    # The PIL backend, not the torchvision one: it resizes as the original code did.
    return transformers.CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=Image.Resampling.BICUBIC,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )


def load_clip_processor(pretrained: str | os.PathLike, local_files_only: bool = False) -> Any:
    """The ``CLIPProcessor`` (tokenizer + image processor) of a hub id or local folder."""
    transformers = require("transformers")
    return transformers.CLIPProcessor.from_pretrained(os.fspath(pretrained), local_files_only=local_files_only)


def load_clip_model(
    pretrained: str | os.PathLike | None,
    device: torch.device,
    torch_dtype: torch.dtype,
    local_files_only: bool = False,
    use_safetensors: bool | None = True,
    config: Any = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Any:
    """Load a transformers ``CLIPModel`` in eval mode on ``device`` / ``torch_dtype``.

    Args:
        pretrained: hub id or local folder; ``None`` with ``config`` and ``state_dict`` builds the model from
            weights already in memory (for checkpoints converted from another layout).
        use_safetensors: ``True`` requires ``model.safetensors``; ``None`` prefers it and otherwise reads
            ``pytorch_model.bin``, which transformers loads with ``torch.load(weights_only=True)``.
    """
    transformers = require("transformers")
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if pretrained is None:
        model, info = transformers.CLIPModel.from_pretrained(
            None, config=config, state_dict=state_dict, output_loading_info=True, **kwargs
        )
        check_loading_info(info, "CLIP")
    else:
        model = transformers.CLIPModel.from_pretrained(
            os.fspath(pretrained), local_files_only=local_files_only, use_safetensors=use_safetensors, **kwargs
        )
    return model.to(device).eval().requires_grad_(False)


def image_embeddings(model: Any, processor: Any, images: list[Image.Image]) -> torch.Tensor:
    """L2-normalised projected image embeddings ``[B, D]``, in float32."""
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    pixels = pixels.to(device=model.device, dtype=model.dtype)
    embeds = model.get_image_features(pixel_values=pixels).pooler_output.float()
    return embeds / embeds.norm(dim=-1, keepdim=True)


def text_embeddings(model: Any, processor: Any, texts: list[str]) -> torch.Tensor:
    """L2-normalised projected text embeddings ``[B, D]``, in float32; texts truncated to the context window."""
    tokens = processor.tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=model.config.text_config.max_position_embeddings,
        return_tensors="pt",
    )
    output = model.get_text_features(
        input_ids=tokens["input_ids"].to(model.device), attention_mask=tokens["attention_mask"].to(model.device)
    )
    embeds = output.pooler_output.float()
    return embeds / embeds.norm(dim=-1, keepdim=True)


def paired_cosine(model: Any, processor: Any, images: list[Image.Image], texts: list[str]) -> torch.Tensor:
    """Cosine similarity of each image with its own text: the diagonal of the image-text similarity matrix."""
    return (image_embeddings(model, processor, images) * text_embeddings(model, processor, texts)).sum(dim=-1)

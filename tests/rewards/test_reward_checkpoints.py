"""Checkpoint handling of the model-based rewards: safe loading, key conversions, scores against references."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel, CLIPProcessor

from promptloop_env.rewards.aesthetic import LaionAesthetic
from promptloop_env.rewards.clip_score import ClipScore
from promptloop_env.rewards.hps import HPSv2, open_clip_to_transformers, transformers_to_open_clip
from promptloop_env.rewards.imagereward import (
    ImageRewardScore,
    imagereward_to_transformers,
    transformers_to_imagereward,
)
from promptloop_env.rewards.model_base import load_state_dict_file, mlp_head, resolve_file
from promptloop_env.rewards.pickscore import PickScore

QUERIES = ["a red circle on the left", "a large blue square", "a green cat"]


def clip_forward_logits(folder: str, processor_folder: str, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal of CLIPModel.forward's logits_per_image and the logit scale, computed without our helpers."""
    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(processor_folder)
    inputs = processor(text=QUERIES, images=list(images), return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**inputs).logits_per_image
    return logits.diagonal(), model.logit_scale.exp().detach()


def test_clip_score_is_100_cosine_clipped_at_zero(standin, images):
    folder = standin("clip-score")["pretrained"]
    logits, scale = clip_forward_logits(folder, folder, images)
    expected = (100 * logits / scale).clamp(min=0).numpy()
    assert expected.min() > 0  # the stand-in's seed keeps the values away from the clip
    np.testing.assert_allclose(ClipScore(device="cpu", **standin("clip-score"))(images, QUERIES), expected, rtol=1e-4)


def test_pickscore_is_the_pair_logit(standin, images):
    kwargs = standin("pickscore")
    logits, _ = clip_forward_logits(kwargs["pretrained"], kwargs["processor"], images)
    np.testing.assert_allclose(PickScore(device="cpu", **kwargs)(images, QUERIES), logits.numpy(), rtol=1e-4)


def test_aesthetic_is_the_head_on_the_normalised_image_embedding(standin, images):
    folder = standin("aesthetic")["pretrained"]
    model = CLIPModel.from_pretrained(folder).eval()
    pixels = CLIPProcessor.from_pretrained(folder)(images=list(images), return_tensors="pt")["pixel_values"]
    head = mlp_head(model.config.projection_dim)
    state = torch.load(os.path.join(folder, "aesthetic-model.pth"), weights_only=True)
    assert sorted(state) == sorted(f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias"))
    head.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
    with torch.no_grad():
        embeds = model.vision_model(pixel_values=pixels).pooler_output @ model.visual_projection.weight.T
        expected = head.eval()(embeds / embeds.norm(dim=-1, keepdim=True)).squeeze(-1).numpy()
    np.testing.assert_allclose(
        LaionAesthetic(device="cpu", **standin("aesthetic"))(images, QUERIES), expected, rtol=1e-4
    )


def test_aesthetic_head_reads_a_safetensors_conversion(standin, images, tmp_path):
    folder = standin("aesthetic")["pretrained"]
    state = torch.load(os.path.join(folder, "aesthetic-model.pth"), weights_only=True)
    save_file(state, tmp_path / "head.safetensors")
    converted = LaionAesthetic(device="cpu", pretrained=folder, head=str(tmp_path / "head.safetensors"))
    assert converted(images, QUERIES) == LaionAesthetic(device="cpu", **standin("aesthetic"))(images, QUERIES)


class NotATensor:
    """Any class instance in a pickle: weights_only loading must refuse it."""


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"layers.0.weight": torch.zeros(1), "payload": NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_state_dict_file(path)


def test_state_dict_files_unwrap_and_strip_prefixes(tmp_path):
    torch.save({"epoch": 3, "state_dict": {"module.a": torch.ones(2), "b": torch.zeros(1)}}, tmp_path / "ckpt.pt")
    state = load_state_dict_file(tmp_path / "ckpt.pt")
    assert sorted(state) == ["a", "b"] and torch.equal(state["a"], torch.ones(2))
    torch.save({"a": 1.0}, tmp_path / "scalars.pt")
    with pytest.raises(ValueError, match="state dict of tensors"):
        load_state_dict_file(tmp_path / "scalars.pt")


def test_resolve_file_prefers_local_paths(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"")
    assert resolve_file(tmp_path, "w.pt") == str(tmp_path / "w.pt")
    assert resolve_file(tmp_path / "w.pt", "ignored.pt") == str(tmp_path / "w.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        resolve_file(tmp_path, "missing.pt")


def tiny_clip_state() -> dict[str, torch.Tensor]:
    common = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**common, "vocab_size": 50}, vision_config={**common, "image_size": 16, "patch_size": 8}
    )
    return CLIPModel(config).state_dict()


def test_open_clip_conversion_round_trips_with_open_clip_key_names():
    original = tiny_clip_state()
    open_clip = transformers_to_open_clip(original)
    for key in (
        "token_embedding.weight",
        "positional_embedding",
        "transformer.resblocks.1.attn.in_proj_weight",
        "transformer.resblocks.0.mlp.c_fc.bias",
        "ln_final.weight",
        "text_projection",
        "logit_scale",
        "visual.class_embedding",
        "visual.conv1.weight",
        "visual.ln_pre.bias",
        "visual.transformer.resblocks.1.attn.out_proj.weight",
        "visual.ln_post.weight",
        "visual.proj",
    ):
        assert key in open_clip, key
    assert open_clip["transformer.resblocks.0.attn.in_proj_weight"].shape == (48, 16)
    assert open_clip["visual.proj"].shape == original["visual_projection.weight"].T.shape
    back = open_clip_to_transformers(open_clip)
    expected = {k: v for k, v in original.items() if not k.endswith("position_ids")}
    assert sorted(back) == sorted(expected)
    assert all(torch.equal(back[k], expected[k]) for k in expected)
    with pytest.raises(KeyError, match="text.transformer"):
        open_clip_to_transformers({"text.transformer.resblocks.0.ln_1.weight": torch.zeros(1)})


def test_hpsv2_is_the_cosine_of_the_converted_clip(standin, images):
    kwargs = standin("hpsv2")
    checkpoint = torch.load(os.path.join(kwargs["pretrained"], "HPS_v2.1_compressed.pt"), weights_only=True)
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in checkpoint["state_dict"]
    config = CLIPConfig.from_pretrained(kwargs["clip_config"])
    model = CLIPModel(config).eval()
    model.load_state_dict(open_clip_to_transformers(checkpoint["state_dict"]), strict=True)
    processor = CLIPProcessor.from_pretrained(kwargs["clip_config"])
    inputs = processor(text=QUERIES, images=list(images), return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = (model(**inputs).logits_per_image.diagonal() / model.logit_scale.exp()).numpy()
    np.testing.assert_allclose(HPSv2(device="cpu", **kwargs)(images, QUERIES), expected, rtol=1e-4)


def test_imagereward_checkpoint_uses_upstream_key_names(standin):
    state = torch.load(os.path.join(standin("imagereward")["pretrained"], "ImageReward.pt"), weights_only=True)
    for key in (
        "blip.visual_encoder.cls_token",
        "blip.visual_encoder.pos_embed",
        "blip.visual_encoder.patch_embed.proj.weight",
        "blip.visual_encoder.blocks.1.attn.qkv.weight",
        "blip.visual_encoder.blocks.0.attn.proj.bias",
        "blip.visual_encoder.blocks.0.norm2.weight",
        "blip.visual_encoder.blocks.1.mlp.fc2.weight",
        "blip.visual_encoder.norm.bias",
        "blip.text_encoder.embeddings.word_embeddings.weight",
        "blip.text_encoder.encoder.layer.1.crossattention.self.key.weight",
        "blip.text_encoder.encoder.layer.0.attention.output.LayerNorm.weight",
        "mlp.layers.7.bias",
    ):
        assert key in state, key
    vision, text, head = imagereward_to_transformers(state)
    assert "blip.vision_proj.weight" in state and "encoder.layers.1.self_attn.projection.weight" in vision
    round_trip = transformers_to_imagereward(vision, text, head)
    kept = {k for k in state if not k.startswith(("blip.vision_proj", "blip.text_proj")) and "position_ids" not in k}
    assert set(round_trip) == kept
    with pytest.raises(KeyError, match="blip.itm_head"):
        imagereward_to_transformers({"blip.itm_head.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="blocks.0.ls1"):
        imagereward_to_transformers({"blip.visual_encoder.blocks.0.ls1.gamma": torch.zeros(1)})


def test_imagereward_text_encoder_is_bidirectional_and_sees_the_image(standin, images):
    reward = ImageRewardScore(device="cpu", **standin("imagereward"))
    reward.load()
    tokens = reward.tokenizer(
        ["a red circle", "a red square"], padding="max_length", max_length=8, return_tensors="pt"
    )
    pixels = reward.image_processor(images=list(images[:1]) * 2, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        image_embeds = reward.vision(pixel_values=pixels).last_hidden_state
        cls = reward.text(
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
            encoder_hidden_states=image_embeds,
            is_decoder=False,
        ).last_hidden_state[:, 0]
    # Under a causal mask the [CLS] output could not see the last word.
    assert not torch.allclose(cls[0], cls[1])
    same_query = reward(images, ["a red circle"] * 3)
    assert len(set(same_query)) == 3

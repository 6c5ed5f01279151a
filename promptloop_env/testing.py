"""Helpers for tests, benchmarks and examples (offline, CPU, seconds): tiny pipelines, one episode, reward stand-ins.

The reward stand-ins are tiny random-weight versions of the model-based rewards: each builder writes, into a
folder, files in the same layout as the public checkpoint (a transformers CLIP folder, an OpenCLIP-layout
HPSv2 pickle, an ``ImageReward.pt`` in upstream key names with its ``med_config.json`` and a BERT tokenizer,
a LAION head ``.pth``) with the same architecture at toy sizes, and returns the constructor keywords that
load them through the reward's real loading path.

>>> import tempfile
>>> reward = make_standin_reward("clip-score", tempfile.mkdtemp(), device="cpu")
>>> len(reward(sample_images(2), ["a red circle", "a blue square"]))
2
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from promptloop_env.logs import quiet_loading
from promptloop_env.registry import lookup
from promptloop_env.rewards.clip_common import clip_image_processor
from promptloop_env.rewards.hps import transformers_to_open_clip
from promptloop_env.rewards.imagereward import transformers_to_imagereward
from promptloop_env.rewards.model_base import ModelReward, mlp_head, require

_PIPES: dict[tuple, Any] = {}


def tiny_pipe(scheduler: str = "ddim", prediction_type: str = "epsilon", size: str = "tiny") -> Any:
    """A cached tiny ``StableDiffusionPipeline`` (the env never mutates its weights, so sharing is safe)."""
    from promptloop_env.backbones.tiny import tiny_stable_diffusion_pipeline

    key = (scheduler, prediction_type, size)
    if key not in _PIPES:
        with quiet_loading():  # diffusers' pipeline imports make transformers warn about torchvision
            _PIPES[key] = tiny_stable_diffusion_pipeline(
                size=size, scheduler=scheduler, prediction_type=prediction_type
            )
    return _PIPES[key]


def run_episode(
    env: Any, query: str, seed: int, actions: Sequence[str] | Callable[[dict], str] | None = None
) -> tuple[list[dict], float, dict]:
    """Play one episode of a single env.

    Args:
        env: a ``PromptLoop-v0`` env (wrappers allowed).
        query: the user's query.
        seed: the episode's seed.
        actions: the prompts, one per step; or a function of the observation that returns the next one;
            default: the query every time.

    Returns:
        Every observation (the reset one first), the terminal reward and the last info.
    """
    obs, info = env.reset(seed=seed, options={"query": query})
    observations, terminated, reward = [obs], False, 0.0
    while not terminated:
        if actions is None:
            action = query
        elif callable(actions):
            action = actions(obs)
        else:
            action = actions[len(observations) - 1]
        obs, reward, terminated, _, info = env.step(action)
        observations.append(obs)
    return observations, float(reward), info


# -- reward stand-ins ------------------------------------------------------------------------------------
STANDIN_IMAGE_SIZE = 32
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789,.!?'-"
_WORDS = ["a", "an", "the", "red", "blue", "green", "circle", "square", "cat", "dog", "on", "left", "right", "large"]


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.2) -> torch.nn.Module:
    """Overwrite every floating parameter with N(0, std) noise from a private generator (global RNG untouched)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return module.eval()


def tiny_clip_tokenizer(folder: str) -> Any:
    """A byte-level BPE ``CLIPTokenizer`` over letters, digits, some punctuation and a few merged words."""
    transformers = require("transformers")
    vocab: dict[str, int] = {}
    for char in _CHARS:
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    merges = []
    for word in _WORDS:  # left-to-right merges so that each listed word becomes one token
        current = word[0]
        for index, char in enumerate(word[1:], start=1):
            nxt = char + ("</w>" if index == len(word) - 1 else "")
            merges.append(f"{current} {nxt}")
            current += nxt
            vocab.setdefault(current, len(vocab))
    # As in CLIP, the special tokens come last, so the end-of-text id is the largest.
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return transformers.CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))


def tiny_bert_tokenizer(folder: str) -> Any:
    """An uncased WordPiece ``BertTokenizer`` with BLIP's two extra tokens ``[DEC]`` and ``[ENC]``."""
    transformers = require("transformers")
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS]
    pieces += [c for c in _CHARS if c not in pieces] + [f"##{c}" for c in _CHARS]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(pieces) + "\n")
    tokenizer = transformers.BertTokenizer(os.path.join(folder, "vocab.txt"))
    tokenizer.add_tokens(["[DEC]", "[ENC]"], special_tokens=True)
    return tokenizer


def save_tiny_clip(folder: str, seed: int = 0, hidden_act: str = "quick_gelu", weights: bool = True) -> Any:
    """Save a tiny random ``CLIPModel`` (unless ``weights=False``) and its ``CLIPProcessor`` to ``folder``."""
    transformers = require("transformers")
    tokenizer = tiny_clip_tokenizer(os.path.join(folder, "tokenizer_src"))
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = transformers.CLIPConfig(
        text_config={
            **common,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "hidden_act": hidden_act,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**common, "image_size": STANDIN_IMAGE_SIZE, "patch_size": 8, "hidden_act": hidden_act},
        projection_dim=16,
    )
    model = _randomize(transformers.CLIPModel(config), seed)
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(100.0)))
    processor = transformers.CLIPProcessor(
        image_processor=clip_image_processor(STANDIN_IMAGE_SIZE), tokenizer=tokenizer
    )
    processor.save_pretrained(folder)
    if weights:
        model.save_pretrained(folder, safe_serialization=True)
    else:
        config.save_pretrained(folder)
    return model


def build_clip_score(folder: str) -> dict[str, Any]:
    """A tiny CLIP folder for :class:`~promptloop_env.rewards.clip_score.ClipScore`."""
    save_tiny_clip(folder, seed=4)  # a seed whose cosines are positive, so the clip at 0 does not hide them
    return {"pretrained": folder}


def build_pickscore(folder: str) -> dict[str, Any]:
    """A tiny CLIP-H-like model folder plus a separate processor folder, as PickScore's two hub repos."""
    save_tiny_clip(os.path.join(folder, "model"), seed=2, hidden_act="gelu")
    save_tiny_clip(os.path.join(folder, "processor"), seed=2, hidden_act="gelu", weights=False)
    return {"pretrained": os.path.join(folder, "model"), "processor": os.path.join(folder, "processor")}


def build_aesthetic(folder: str) -> dict[str, Any]:
    """A tiny CLIP folder with a LAION-layout head pickle ``aesthetic-model.pth`` (keys ``layers.N.*``) in it."""
    model = save_tiny_clip(folder, seed=3)
    head = _randomize(mlp_head(model.config.projection_dim), seed=4, std=0.05)
    torch.save({f"layers.{k}": v for k, v in head.state_dict().items()}, os.path.join(folder, "aesthetic-model.pth"))
    return {"pretrained": folder}


def build_hpsv2(folder: str) -> dict[str, Any]:
    """A tiny CLIP converted to OpenCLIP keys, pickled as ``{"state_dict": ...}``, plus its config folder."""
    model = save_tiny_clip(os.path.join(folder, "clip"), seed=5, hidden_act="gelu", weights=False)
    checkpoint = {"epoch": 1, "state_dict": transformers_to_open_clip(model.state_dict())}
    torch.save(checkpoint, os.path.join(folder, "HPS_v2.1_compressed.pt"))
    return {"pretrained": folder, "clip_config": os.path.join(folder, "clip")}


def build_imagereward(folder: str) -> dict[str, Any]:
    """A tiny BLIP ViT + cross-attending BERT + head, saved as upstream ``ImageReward.pt`` with ``med_config.json``."""
    transformers = require("transformers")
    tokenizer = tiny_bert_tokenizer(os.path.join(folder, "tokenizer_src"))
    tokenizer.save_pretrained(folder)
    vision_config = transformers.BlipVisionConfig(
        hidden_size=128,  # 128 // 64 = 2 heads, the ViT convention the loader relies on
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=STANDIN_IMAGE_SIZE,
        patch_size=16,
        layer_norm_eps=1e-6,
    )
    med_config = {
        "architectures": ["BertModel"],
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 64,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "add_cross_attention": True,
        "encoder_width": 128,
    }
    text_config = transformers.BlipTextConfig(
        **{k: med_config[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")},
        vocab_size=med_config["vocab_size"],
        max_position_embeddings=med_config["max_position_embeddings"],
        encoder_hidden_size=vision_config.hidden_size,
        bos_token_id=len(tokenizer) - 2,  # [DEC], as in BLIP
        is_decoder=True,
    )
    vision = _randomize(transformers.BlipVisionModel(vision_config), seed=6)
    text = _randomize(transformers.BlipTextModel(text_config, add_pooling_layer=False), seed=7)
    head = _randomize(mlp_head(text_config.hidden_size), seed=8, std=0.05)
    state = transformers_to_imagereward(vision.state_dict(), text.state_dict(), head.state_dict())
    # Entries the real checkpoint carries and the score does not use.
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
    state["blip.vision_proj.weight"] = torch.zeros(16, vision_config.hidden_size)
    state["blip.text_proj.weight"] = torch.zeros(16, text_config.hidden_size)
    torch.save(state, os.path.join(folder, "ImageReward.pt"))
    with open(os.path.join(folder, "med_config.json"), "w") as f:
        json.dump(med_config, f, indent=2)
    return {"pretrained": folder}


STANDIN_BUILDERS: dict[str, Callable[[str], dict[str, Any]]] = {
    "aesthetic": build_aesthetic,
    "clip-score": build_clip_score,
    "pickscore": build_pickscore,
    "imagereward": build_imagereward,
    "hpsv2": build_hpsv2,
}


def make_standin_reward(
    name: str, folder: str, device: str | torch.device | None = "cpu", torch_dtype: torch.dtype | None = None
) -> ModelReward:
    """Build the stand-in files of reward ``name`` in ``folder`` and return the reward that loads them offline."""
    from promptloop_env.rewards import REWARDS

    kwargs = lookup(STANDIN_BUILDERS, name, "stand-in reward")(folder)
    return REWARDS[name](device=device, torch_dtype=torch_dtype, local_files_only=True, **kwargs)


def sample_images(batch: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """``batch`` random ``uint8 [size, size, 3]`` images (smooth colour gradients plus noise)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size)
    base = rng.uniform(0, 255, (batch, 1, 1, 3)) * ramp[None, :, None, None]
    noise = rng.normal(0.0, 20.0, (batch, size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def compose_observation(
    query: str, prompt: str, segment: int, timestep: float, image: np.ndarray | None = None
) -> dict[str, Any]:
    """A toy-compose observation for agent tests; its preview defaults to a lone red circle on white.

    >>> compose_observation("a circle", "a circle", 0, 0.0)["image"].shape
    (64, 64, 3)
    """
    from promptloop_env.toy.compose import ComposeScene, Thing, render

    if image is None:
        image = render(ComposeScene((Thing("circle", "red", 16, 30, 7),), "white"))
    return {"query": query, "prompt": prompt, "segment": segment, "timestep": np.array([timestep]), "image": image}

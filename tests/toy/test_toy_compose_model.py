"""The shipped toy-compose models: offline loading, what each variant is, and a recorded rollout slice of
toy-compose (replay and package size are tested with toy-shapes' in test_toy_model.py)."""

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
# Pixels [11:14, 12:15] (the object this seed's noise places top left) then [44:47, 44:47] (background), RGB,
# of the 64x64 preview after the second action (step 8 of 12) and of the final image, for the rollout of
# test_seeded_rollout_matches_recorded_slice. Recorded on x86-64 CPU, torch 2.13, one thread; other BLAS builds
# may differ by a grey level or two.
PREVIEW_SLICE = [
    29, 67, 225, 37, 68, 223, 38, 70, 226, 26, 66, 221, 31, 67, 219, 31, 68, 223, 29, 67, 226, 31, 65, 222, 32, 66,
    227, 130, 130, 127, 130, 131, 126, 130, 130, 127, 130, 130, 127, 130, 130, 127, 130, 130, 127, 130, 129, 127, 129,
    130, 127, 130, 130, 127,
]  # fmt: skip
FINAL_SLICE = [
    33, 69, 224, 42, 70, 223, 40, 71, 229, 30, 68, 219, 36, 68, 217, 35, 70, 225, 33, 68, 224, 36, 66, 219, 32, 67,
    230, 128, 127, 129, 129, 129, 127, 129, 129, 128, 128, 128, 129, 129, 129, 129, 129, 129, 128, 129, 127, 129, 128,
    129, 128, 129, 129, 128,
]  # fmt: skip
SLICE_TOLERANCE = 2  # grey levels


def image_slice(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[11:14, 12:15], image[44:47, 44:47]]).reshape(-1).astype(int)


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


# Each variant's sampler (the generalisation experiment changes it on purpose) and whether it shares
# toy-compose's tokenizer and VAE (all do: they are fine-tunes of toy-shapes' VAE and the compose vocabulary).
VARIANTS = {
    "toy-compose": "DDIMScheduler",
}


@pytest.mark.parametrize("backbone", list(VARIANTS))
def test_toy_compose_loads_shipped_model_without_network(monkeypatch, backbone):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted while loading the toy world")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(backbones, "_LOADED", weakref.WeakValueDictionary())  # force a fresh load from disk
    env = gym.make("PromptLoop-v0", backbone=backbone, reward="toy-compose")
    unwrapped = env.unwrapped
    pipe = unwrapped.backbone.pipe
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert type(pipe.scheduler).__name__ == VARIANTS[backbone]
    assert (
        pipe.scheduler.config.prediction_type == "v_prediction"
        and pipe.scheduler.config.timestep_spacing == "trailing"
    )
    assert unwrapped.backbone.latent_rgb is not None
    folder = PACKAGE_ROOT / BACKBONES[backbone].source.removeprefix("package:")
    assert (folder / "tokenizer" / "tokenizer.json").read_text() == (
        FOLDER / "tokenizer" / "tokenizer.json"
    ).read_text()
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
    # What the numbers mean: this seed's noise makes one blue circle and nothing else; by step 8 of 12 the
    # preview shows it, too late for the switched prompt to add a square or turn it green. The query asks for
    # a red circle and a blue square, so the strict reward is 0.
    assert analyse(preview).describe() == analyse(final).describe() == "blue circle on gray"
    assert reward == 0.0

"""The shipped toy models: offline default env, a recorded rollout slice, identity replay and package size of each."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import promptloop_env  # noqa: F401
from promptloop_env.backbones import BACKBONES, PACKAGE_ROOT
from promptloop_env.toy.analyser import analyse
from promptloop_env.toy.prompts import TOY_TRAIN_QUERIES
from promptloop_env.toy.rewards import ToyFidelity

TOY_FOLDER = PACKAGE_ROOT / BACKBONES["toy-shapes"].source.removeprefix("package:")
QUERY = "a large red circle on the left, gray background"
SWITCHED = "a large blue circle on the left, gray background"


def test_default_env_loads_shipped_model_without_network(offline_fresh_load):
    env = gym.make("PromptLoop-v0")
    unwrapped = env.unwrapped
    pipe = unwrapped.backbone.pipe
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert Path(pipe.name_or_path).resolve() == TOY_FOLDER.resolve()
    assert [(name, type(fn), weight) for name, fn, weight in unwrapped.reward_fn.parts] == [
        ("toy-fidelity", ToyFidelity, 1.0)
    ]
    assert tuple(unwrapped.queries) == tuple(TOY_TRAIN_QUERIES)
    assert unwrapped.guidance_scale == 1.0
    assert unwrapped.backbone.latent_rgb is not None  # the fitted latent_rgb.json travels with the model
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (256, 256, 3) and info["query"] in TOY_TRAIN_QUERIES
    env.close()


def test_seeded_rollout_matches_recorded_slice(assert_recorded_slices):
    torch.set_num_threads(1)
    env = gym.make("PromptLoop-v0", num_inference_steps=6, num_refinements=3, preview_size=64)
    obs, info = env.reset(seed=0, options={"query": QUERY})
    assert info["noise_seed"] == 5874934615388537134
    obs, *_ = env.step(QUERY)
    preview = obs["image"]
    env.step(SWITCHED)
    _, reward, terminated, _, info = env.step(SWITCHED)
    final = info["final_image"]
    assert terminated
    assert_recorded_slices("toy-shapes", preview, final)
    # What the numbers mean: the preview after one third of the steps already shows the query's red circle, and
    # the prompt switched there turns it blue; the reward scores the final image against the query (4 of 5 right).
    assert analyse(preview).colour == "red" and analyse(final).colour == "blue"
    assert analyse(preview).position == analyse(final).position == "left"
    assert reward == pytest.approx(0.8)


SHIPPED = ["toy-shapes", "toy-compose"]


@pytest.mark.parametrize("backbone", SHIPPED)
def test_identity_episode_replays_plain_pipeline(backbone):
    # 8 steps keep the fast tier fast; the code path is the one of the default 20.
    torch.set_num_threads(1)
    env = gym.make("PromptLoop-v0", backbone=backbone, num_inference_steps=8, num_refinements=4, preview="none")
    obs, info = env.reset(seed=3)
    query = obs["query"]
    terminated = False
    while not terminated:
        obs, _, terminated, _, info = env.step(query)
    pipe = env.unwrapped.backbone.pipe
    image = pipe(
        query,
        num_inference_steps=8,
        guidance_scale=info["guidance_scale"],
        generator=torch.Generator("cpu").manual_seed(info["noise_seed"]),
        output_type="np",
    ).images[0]
    np.testing.assert_array_equal((image * 255).round().astype(np.uint8), info["final_image"])


@pytest.mark.parametrize("backbone", SHIPPED)
def test_packaged_model_is_small_and_safetensors_only(backbone):
    folder = PACKAGE_ROOT / BACKBONES[backbone].source.removeprefix("package:")
    files = [p for p in folder.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total < 10 * 2**20, f"{backbone} folder is {total / 2**20:.1f} MiB"
    pickles = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".msgpack", ".h5", ".onnx", ".npy", ".npz"}
    assert not [p.name for p in files if p.suffix in pickles]
    weights = {p.parent.name for p in files if p.suffix == ".safetensors"}
    assert weights == {"unet", "vae", "text_encoder"}
    for name in ("model_index.json", "training_config.json", "README.md"):  # training logs stay in research/
        assert (folder / name).is_file(), name

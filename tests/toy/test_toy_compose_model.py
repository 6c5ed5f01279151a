"""The shipped toy-compose models: offline loading, what each variant is, and a recorded rollout slice of
toy-compose (replay and package size are tested with toy-shapes' in test_toy_model.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import promptloop_env  # noqa: F401
from promptloop_env.backbones import BACKBONES, PACKAGE_ROOT
from promptloop_env.toy.compose_analyser import analyse
from promptloop_env.toy.compose_prompts import TOY_COMPOSE_TRAIN_QUERIES
from promptloop_env.toy.rewards import ToyCompose

FOLDER = PACKAGE_ROOT / BACKBONES["toy-compose"].source.removeprefix("package:")
QUERY = "a red circle and a blue square, gray background"
SWITCHED = "a green circle and a blue square, gray background"


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
def test_toy_compose_loads_shipped_model_without_network(offline_fresh_load, backbone):
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


def test_seeded_rollout_matches_recorded_slice(assert_recorded_slices):
    torch.set_num_threads(1)
    preview, final, reward, info = rollout()
    assert_recorded_slices("toy-compose", preview, final)
    # What the numbers mean: this seed's noise makes one blue circle and nothing else; by step 8 of 12 the
    # preview shows it, too late for the switched prompt to add a square or turn it green. The query asks for
    # a red circle and a blue square, so the strict reward is 0.
    assert analyse(preview).describe() == analyse(final).describe() == "blue circle on gray"
    assert reward == 0.0

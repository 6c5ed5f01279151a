"""Issue 26's env-side stumbles, walked as a new user meets them, each with the behaviour a user expects."""

from __future__ import annotations

import logging
import time
import warnings

import gymnasium as gym
import numpy as np
import pytest

import promptloop_env  # noqa: F401  (registers PromptLoop-v0)
from promptloop_env.rewards import MissingWeightsError
from promptloop_env.testing import tiny_pipe

FAST = {"num_inference_steps": 4, "num_refinements": 2, "preview": "none", "preview_size": 16}


# 1. A toy backbone brings its own world's reward and prompt set; another world's reward is refused.
def test_a_toy_backbone_brings_its_own_reward_and_queries():
    env = gym.make("PromptLoop-v0", backbone="toy-compose", **FAST).unwrapped
    assert [name for name, _, _ in env.reward_fn.parts] == ["toy-compose"]
    assert env.queries == promptloop_env.prompts.PROMPT_SETS["toy-compose-train"]
    shapes = gym.make("PromptLoop-v0", **FAST).unwrapped  # the registered default: toy-shapes
    assert [name for name, _, _ in shapes.reward_fn.parts] == ["toy-fidelity"]


def test_another_worlds_toy_reward_is_an_error_that_says_so():
    with pytest.raises(ValueError, match=r"'toy-fidelity' scores the toy-shapes world.*'toy-compose'"):
        gym.make("PromptLoop-v0", backbone="toy-compose", reward="toy-fidelity", **FAST)
    with pytest.raises(ValueError, match=r"backbone 'tiny' has none: name one"):
        gym.make("PromptLoop-v0", backbone="tiny", **FAST)  # no world: the reward must be named


# 2. A toy reward refuses what its world cannot read: at reset, in a prompt set, and when called.
@pytest.mark.parametrize("backbone", ["toy-compose", "toy-shapes"])
@pytest.mark.parametrize(
    ("query", "why"),
    [("a photo of a dog", "no word 'dog'"), ("a crimson circle", "no word 'crimson'"), ("", "is empty")],
)
def test_a_query_the_world_cannot_read_is_refused_at_reset(backbone, query, why):
    env = gym.make("PromptLoop-v0", backbone=backbone, **FAST)
    with pytest.raises(ValueError, match=f"options\\['query'\\].*{why}"):
        env.reset(seed=0, options={"query": query})
    env.reset(seed=0, options={"query": "a red circle"})  # a readable one still works


def test_a_prompt_set_with_an_unreadable_query_is_refused_when_given():
    with pytest.raises(ValueError, match=r"prompts: reward 'toy-compose' cannot score query 'a photo of a dog'"):
        gym.make("PromptLoop-v0", backbone="toy-compose", prompts=["a red circle", "a photo of a dog"], **FAST)


def test_the_toy_reward_itself_never_gives_a_silent_one():
    from promptloop_env.rewards import make_reward

    reward = make_reward("toy-compose")
    image = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    for query in ("a photo of a dog", "a crimson circle", ""):
        with pytest.raises(ValueError):
            reward(image, [query])


# 4. Paths are paths; a missing backbone weight is the rewards' MissingWeightsError, fast and before any compute.
def test_a_missing_local_folder_says_not_found():
    with pytest.raises(FileNotFoundError, match=r"Backbone folder './models/my-sd' not found"):
        gym.make("PromptLoop-v0", backbone="./models/my-sd", reward="jpeg-compressibility", **FAST)


def test_a_folder_without_a_pipeline_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        gym.make("PromptLoop-v0", backbone=str(tmp_path), reward="jpeg-compressibility", **FAST)


def test_an_uncached_hub_backbone_offline_is_a_missing_weights_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as err:
        gym.make("PromptLoop-v0", backbone="someone/not-a-cached-pipeline", reward="jpeg-compressibility", **FAST)
    message = str(err.value)
    assert "'someone/not-a-cached-pipeline'" in message and "hub cache (" in message
    assert "hf download someone/not-a-cached-pipeline" in message
    assert time.perf_counter() - start < 30  # no retries (a generous bound for a shared CPU)


# 7. The observation stays inside its space; a long prompt is reported once, not printed at every step.
def test_observation_text_stays_inside_the_space_and_info_keeps_it_in_full(caplog):
    env = gym.make("PromptLoop-v0", backbone=tiny_pipe(), reward="jpeg-compressibility", **FAST)
    query = "a red circle \u2014 left, caf\u00e9"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Gymnasium's passive checker would warn "not within the observation space"
        obs, info = env.reset(seed=0, options={"query": query})
        assert env.observation_space.contains(obs) and obs["query"] == "a red circle - left, cafe"
        assert info["query"] == query
        with caplog.at_level(logging.WARNING, logger="promptloop_env"):
            obs, _, _, _, info = env.step("x " * 5000)
            assert env.observation_space.contains(obs) and len(obs["prompt"]) == 1000
            assert info["prompt"] == "x " * 5000 and info["prompt_truncated"] is True
            env.step("y " * 5000)
    assert [r.getMessage()[:28] for r in caplog.records] == ["A prompt is longer than the "]  # said once


def test_the_long_prompt_is_not_printed_by_diffusers(capfd):
    env = gym.make("PromptLoop-v0", backbone=tiny_pipe(), reward="jpeg-compressibility", **FAST)
    env.reset(seed=0, options={"query": "a red circle"})
    capfd.readouterr()
    env.step("z " * 5000)
    out, err = capfd.readouterr()
    assert "truncated" not in err and "zzzz" not in err.replace(" ", "")


# 8. No loading bars and no torchvision fallback warnings unless asked; the user's logging is left as it was.
def test_making_an_env_prints_nothing_and_leaves_logging_as_it_was(capfd):
    import diffusers.utils.logging  # the libraries configure their loggers when first imported
    import transformers.utils.logging

    diffusers.utils.logging.set_verbosity_info()  # a user's own setting, which must survive
    try:
        capfd.readouterr()
        gym.make("PromptLoop-v0", backbone="toy-shapes", **FAST)
        out, err = capfd.readouterr()
        assert "Loading pipeline components" not in err and "torchvision" not in err and err.strip() == ""
        assert logging.getLogger("diffusers").level == logging.INFO
        assert logging.getLogger("transformers").level == transformers.utils.logging.get_verbosity()
        assert diffusers.utils.logging.is_progress_bar_enabled()
    finally:
        diffusers.utils.logging.set_verbosity_warning()


def test_progress_true_shows_the_loading_bars(capfd):
    from promptloop_env.backbones import _LOADED

    _LOADED.clear()  # load again rather than share the loaded backbone
    capfd.readouterr()
    gym.make("PromptLoop-v0", backbone="toy-shapes", progress=True, **FAST)
    assert "Loading pipeline components" in capfd.readouterr().err

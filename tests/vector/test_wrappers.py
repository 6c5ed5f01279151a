"""Wrappers: discrete prompt actions, text-free observations, chat-style observations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium import spaces

from promptloop_env.wrappers import DiscretizePrompt, DropTextObservation, FormatChatObservation


def test_discretize_prompt_with_modifiers(make_env):
    env = DiscretizePrompt(make_env(num_refinements=2), modifiers=["", "bright", "dark"])
    assert env.action_space == spaces.Discrete(3)
    env.reset(seed=0, options={"query": "a red circle"})
    _, _, _, _, info = env.step(0)
    assert info["prompt"] == "a red circle"
    _, reward, terminated, _, info = env.step(np.int64(2))
    assert info["prompt"] == "a red circle, dark" and terminated
    assert info["prompts"] == ["a red circle", "a red circle, dark"]


def test_discretize_prompt_with_a_bank_and_query_field(make_env):
    env = DiscretizePrompt(make_env(), prompts=["a cat", "{query} at night"])
    env.reset(seed=0, options={"query": "a house"})
    assert env.prompt(0) == "a cat" and env.prompt(1) == "a house at night"
    with pytest.raises(ValueError, match=r"int in \[0, 2\)"):
        env.prompt(2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "exactly one of"),
        ({"prompts": ["a"], "modifiers": ["b"]}, ValueError, "exactly one of"),
        ({"prompts": []}, ValueError, "empty"),
        ({"prompts": "a cat"}, TypeError, "list of str"),
        ({"modifiers": ["ok", 3]}, TypeError, "only str"),
        ({"prompts": ["{style} cat"]}, ValueError, "unknown fields"),
        ({"modifiers": ["x"], "template": "{query} {"}, ValueError, "not a valid format string"),
    ],
)
def test_discretize_prompt_validation(make_env, kwargs, error, match):
    with pytest.raises(error, match=match):
        DiscretizePrompt(make_env(), **kwargs)


def test_discretize_prompt_needs_a_text_action(make_env):
    env = DiscretizePrompt(make_env(), modifiers=["", "x"])
    with pytest.raises(TypeError, match="action space is Text"):
        DiscretizePrompt(env, modifiers=["y"])


def test_drop_text_observation(make_env):
    env = DropTextObservation(make_env())
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"image", "segment", "timestep"} and env.observation_space.contains(obs)
    assert set(DropTextObservation(make_env(), keep=["image"]).reset(seed=0)[0]) == {"image"}
    with pytest.raises(ValueError, match="lacks"):
        DropTextObservation(make_env(), keep=["pixels"])
    with pytest.raises(ValueError, match="Text fields"):
        DropTextObservation(make_env(), keep=["image", "query"])


def test_stable_baselines3_accepts_the_wrapped_env(make_env):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env

    env = DiscretizePrompt(DropTextObservation(make_env(preview_size=48)), modifiers=["", "bright"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True)
    assert [str(w.message) for w in caught if "stable_baselines3" in (w.filename or "")] == []


def test_format_chat_observation(make_env):
    env = FormatChatObservation(make_env(num_refinements=2))
    obs, _ = env.reset(seed=0, options={"query": "a blue square"})
    assert env.observation_space.contains(obs)
    system, user = obs["messages"]
    assert system["role"] == "system" and "a blue square" in user["content"] and "Step 1 of 2" in user["content"]
    obs, *_ = env.step("a bright blue square")
    assert "Prompt now in force: a bright blue square" in obs["messages"][-1]["content"]
    assert "Step 2 of 2 (50% of the denoising done)" in obs["messages"][-1]["content"]
    bare = FormatChatObservation(make_env(), system_prompt=None, user_template="{query}|{prompt}")
    obs, _ = bare.reset(seed=0, options={"query": "q"})
    assert obs["messages"] == ({"role": "user", "content": "q|q"},)
    blocks = FormatChatObservation.with_image_block(obs["messages"])
    assert blocks[0]["content"][0] == {"type": "image"}
    with pytest.raises(ValueError, match="unknown fields"):
        FormatChatObservation(make_env(), user_template="{mood}")
    with pytest.raises(TypeError, match="PromptLoop observation"):
        FormatChatObservation(DropTextObservation(make_env()))

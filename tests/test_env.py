"""PromptLoopEnv: Gymnasium API conformance, seeding, schedules, previews, rewards and bad input."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import promptloop_env
from promptloop_env.testing import run_episode, tiny_pipe


def test_check_env_passes_without_warnings(make_env):
    env = make_env(render_mode="rgb_array", preview="vae")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    messages = [str(w.message) for w in caught if "__array__" not in str(w.message)]
    assert messages == []


def test_spaces_and_observation(make_env):
    env = make_env(preview_size=48, num_refinements=4)
    obs, info = env.reset(seed=0, options={"query": "a red circle"})
    assert env.observation_space.contains(obs)
    assert obs["image"].shape == (48, 48, 3) and obs["image"].dtype == np.uint8
    assert obs["query"] == obs["prompt"] == "a red circle"
    assert obs["segment"] == 0 and obs["timestep"][0] == 0.0
    assert env.action_space.contains("a large, bright red circle: left side!")
    for key in ("query", "prompt", "prompts", "timestep", "denoise_step", "noise_seed"):
        assert key in info
    obs, reward, terminated, truncated, info = env.step("a red circle, bright")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert obs["segment"] == 1 and obs["prompt"] == "a red circle, bright"
    assert info["denoise_step"] == 2 and obs["timestep"][0] == pytest.approx(0.25)
    assert info["prompts"] == ["a red circle, bright"]


def test_terminal_step_and_reward_against_query(make_env):
    seen = []

    def reward(images, queries):
        seen.append((images.shape, list(queries)))
        return [float(images.mean())]

    env = make_env(reward={reward: 2.0, "jpeg-compressibility": 0.5}, num_refinements=2)
    env.reset(seed=1, options={"query": "a blue square"})
    env.step("something else entirely")
    obs, r, terminated, truncated, info = env.step("another prompt")
    assert terminated and not truncated
    assert seen == [((1, 64, 64, 3), ["a blue square"])]
    parts = info["reward_components"]
    assert set(parts) == {"reward", "jpeg-compressibility"}
    assert r == pytest.approx(2.0 * parts["reward"] + 0.5 * parts["jpeg-compressibility"])
    assert info["final_image"].shape == (64, 64, 3) and info["final_image"].dtype == np.uint8
    assert parts["jpeg-compressibility"] < 0


def test_same_seed_same_everything_different_seed_different_image(make_env):
    env = make_env(refine_schedule="random", preview="vae")
    actions = ["a cat", "a red cat", "a red cat on the left", "a small red cat"]
    results = []
    for seed in (7, 7, 8):
        obs_list = []
        obs, info = env.reset(seed=seed, options={"query": "a cat"})
        obs_list.append(obs["image"].copy())
        for a in actions:
            obs, reward, terminated, _, info = env.step(a)
            obs_list.append(obs["image"].copy())
        results.append((obs_list, reward, info))
    (a, ra, ia), (b, rb, ib), (c, _, ic) = results
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and ra == rb
    assert ia["refine_steps"] == ib["refine_steps"] and ia["noise_seed"] == ib["noise_seed"]
    assert ia["noise_seed"] != ic["noise_seed"]
    assert not np.array_equal(ia["final_image"], ic["final_image"])


def test_no_global_rng_is_touched(make_env):
    env = make_env(refine_schedule="random")
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    run_episode(env, "a cat", seed=0)
    env.reset()
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.array_equal(np_state[1], np.random.get_state()[1])


def test_random_schedule_is_redrawn_each_episode(make_env):
    env = make_env(refine_schedule="random", num_inference_steps=20, num_refinements=5)
    schedules = set()
    env.reset(seed=0)
    for _ in range(6):
        _, info = env.reset()
        steps = info["refine_steps"]
        assert steps[0] == 0 and steps == sorted(set(steps)) and steps[-1] < 20
        schedules.add(tuple(steps))
    assert len(schedules) > 1


def test_explicit_schedule_and_uniform(make_env):
    env = make_env(refine_schedule=[0, 1, 5, 7])
    _, info = env.reset(seed=0)
    assert info["refine_steps"] == [0, 1, 5, 7]
    env = make_env(num_inference_steps=20, num_refinements=5)
    assert env.reset(seed=0)[1]["refine_steps"] == [0, 4, 8, 12, 16]


@pytest.mark.parametrize(
    ("schedule", "error", "match"),
    [
        ([0, 3, 2, 5], ValueError, "strictly increasing"),
        ([1, 2, 3, 4], ValueError, "start at step 0"),
        ([0, 2, 4, 8], ValueError, "< num_inference_steps"),
        ([0, 2], ValueError, "num_refinements"),
        ("geometric", ValueError, "uniform"),
        ([0, 1.5, 3, 4], TypeError, "ints"),
    ],
)
def test_invalid_schedule_is_rejected(make_env, schedule, error, match):
    with pytest.raises(error, match=match):
        make_env(refine_schedule=schedule)


def test_bad_actions_and_call_order(make_env):
    env = make_env(num_refinements=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step("a cat")
    env.reset(seed=0)
    for bad in (None, 3, ["a cat"], b"a cat"):
        with pytest.raises(TypeError, match="must be a str"):
            env.unwrapped.step(bad)
    env.step("")  # the empty prompt is allowed
    env.step("a cat")
    with pytest.raises(RuntimeError, match="terminated"):
        env.unwrapped.step("a cat")


def test_long_prompt_is_truncated_and_flagged(make_env):
    env = make_env(num_refinements=2)
    env.reset(seed=0, options={"query": "a cat"})
    long_prompt = " ".join(["a large red circle on the left"] * 30)
    _, _, _, _, info = env.step(long_prompt)
    assert info["prompt_truncated"] is True
    _, _, _, _, info = env.step("a cat")
    assert info["prompt_truncated"] is False


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="Valid names: .*tiny"):
        gym.make("PromptLoop-v0", backbone="no-such-backbone")
    with pytest.raises(ValueError, match="Valid names: .*jpeg-compressibility"):
        gym.make("PromptLoop-v0", backbone=tiny_pipe(), reward="no-such-reward")
    with pytest.raises(ValueError, match="Valid names: .*latent_rgb"):
        gym.make("PromptLoop-v0", backbone=tiny_pipe(), reward="jpeg-compressibility", preview="sketch")
    with pytest.raises(TypeError, match="backbone must be"):
        gym.make("PromptLoop-v0", backbone=42, reward="jpeg-compressibility")
    with pytest.raises(ValueError, match="num_refinements"):
        gym.make("PromptLoop-v0", backbone=tiny_pipe(), num_inference_steps=3, num_refinements=5)


def test_reward_must_return_one_finite_float_per_image(make_env):
    env = make_env(reward=lambda images, queries: [1.0, 2.0], num_refinements=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="returned 2 values for a batch of 1"):
        env.step("a cat")
    env = make_env(reward=lambda images, queries: [float("nan")], num_refinements=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        env.step("a cat")


@pytest.mark.parametrize("preview", ["none", "latent_rgb", "vae", "taesd"])
def test_previews_have_the_declared_shape(make_env, tmp_path, preview):
    kwargs = {}
    if preview == "taesd":
        from diffusers import AutoencoderTiny

        AutoencoderTiny(
            encoder_block_out_channels=(16, 16, 16, 16),
            decoder_block_out_channels=(16, 16, 16, 16),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
        ).save_pretrained(tmp_path / "taesd")
        kwargs["taesd"] = str(tmp_path / "taesd")
    env = make_env(preview=preview, preview_size=40, render_mode="rgb_array", **kwargs)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (40, 40, 3)
    obs, *_ = env.step("a cat")
    assert obs["image"].shape == (40, 40, 3)
    np.testing.assert_array_equal(env.render(), obs["image"])
    if preview == "none":
        assert obs["image"].max() == 0
    else:
        assert obs["image"].std() > 0


def test_render_none_and_idempotent_close(make_env):
    env = make_env()
    env.reset(seed=0)
    assert env.render() is None
    env.close()
    env.close()


def test_prompt_cache_reuses_embeddings(make_env):
    env = make_env()
    backbone = env.unwrapped.backbone
    first, _ = backbone.encode("a cached prompt")
    second, _ = backbone.encode("a cached prompt")
    assert first is second


def test_backbone_weights_are_shared_between_envs():
    a = gym.make("PromptLoop-v0", backbone="tiny", reward="jpeg-incompressibility", preview="none")
    b = gym.make("PromptLoop-v0", backbone="tiny", reward="jpeg-incompressibility", preview="none")
    assert a.unwrapped.backbone is b.unwrapped.backbone
    a.reset(seed=0)
    b.reset(seed=0)
    assert a.unwrapped._traj.scheduler is not b.unwrapped._traj.scheduler


def test_sync_vector_env(make_env):
    envs = gym.vector.SyncVectorEnv([lambda: make_env(num_refinements=2) for _ in range(2)])
    obs, _ = envs.reset(seed=[0, 1], options={"query": "a cat"})
    assert obs["image"].shape == (2, 32, 32, 3) and obs["query"] == ("a cat", "a cat")
    obs, reward, terminated, truncated, _ = envs.step(("a cat", "a dog"))
    obs, reward, terminated, truncated, _ = envs.step(("a cat", "a dog"))
    assert terminated.all() and reward.shape == (2,)


def test_registered_kwargs_are_json_serialisable():
    import json

    spec = gym.spec("PromptLoop-v0")
    json.dumps(spec.kwargs)
    assert spec.entry_point == "promptloop_env.env:PromptLoopEnv"
    assert promptloop_env.PromptLoopEnv.__doc__.count("## ") >= 9


def test_one_config_object_serves_the_env_and_the_vector_env():
    from promptloop_env import PromptLoopConfig

    config = PromptLoopConfig(
        backbone=tiny_pipe(), reward="jpeg-compressibility", num_inference_steps=4, num_refinements=2, preview="none"
    )
    env = gym.make("PromptLoop-v0", config=config, preview_size=16)  # keywords replace the config's fields
    assert env.unwrapped.core.config.preview_size == 16 and env.unwrapped.num_refinements == 2
    assert env.unwrapped.core.config.backbone is config.backbone
    envs = gym.make_vec("PromptLoop-v0", num_envs=2, config=config)
    assert envs.unwrapped.core.config == config
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'num_steps'; valid: backbone, reward"):
        gym.make("PromptLoop-v0", config=config, num_steps=4)
    with pytest.warns(FutureWarning, match="'backbone_dtype' is now called 'torch_dtype'"):
        gym.make("PromptLoop-v0", config=config, backbone_dtype="float32")

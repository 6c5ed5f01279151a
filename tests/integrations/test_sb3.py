"""The stable-baselines3 VecEnv over PromptLoopVectorEnv, and the vector wrappers under it."""

from __future__ import annotations

import doctest

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import promptloop_env  # noqa: F401
from promptloop_env.integrations import vector_wrappers
from promptloop_env.testing import tiny_pipe
from promptloop_env.wrappers import DiscretizePrompt, DropTextObservation

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.env_checker import check_env  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan  # noqa: E402
from stable_baselines3.common.vec_env.util import obs_space_info  # noqa: E402

from promptloop_env.integrations import sb3  # noqa: E402

ENV_KWARGS = {
    "reward": "jpeg-incompressibility",
    "num_inference_steps": 4,
    "num_refinements": 2,
    "preview": "latent_rgb",
    "preview_size": 36,
}
BANK = ["{query}", "{query}, bright colours", "a dark square"]


def make_vec(num_envs: int = 2, mode: AutoresetMode = AutoresetMode.DISABLED, **kwargs):
    return gym.make_vec(
        "PromptLoop-v0", num_envs=num_envs, autoreset_mode=mode, backbone=tiny_pipe(), **{**ENV_KWARGS, **kwargs}
    )


def make_single():
    env = gym.make("PromptLoop-v0", backbone=tiny_pipe(), **ENV_KWARGS)
    return DiscretizePrompt(DropTextObservation(env), prompts=BANK)


def test_doctests():
    assert doctest.testmod(vector_wrappers).failed == 0
    assert doctest.testmod(sb3).failed == 0


def test_sb3_vec_env_matches_dummy_vec_env_of_single_envs():
    """Same seeds and actions: the batched adapter plays the episodes DummyVecEnv plays, autoresets included."""
    batched = sb3.SB3VecEnv(vector_wrappers.DiscretizePrompt(vector_wrappers.DropTextObservation(make_vec()), BANK))
    dummy = DummyVecEnv([make_single, make_single])
    for venv in (batched, dummy):
        venv.seed(7)
    obs_b, obs_d = batched.reset(), dummy.reset()
    assert [i["noise_seed"] for i in batched.reset_infos] == [i["noise_seed"] for i in dummy.reset_infos]
    rng = np.random.default_rng(0)
    for _ in range(2 * ENV_KWARGS["num_refinements"]):  # two episodes each: the autoreset continues each sub-env
        for key in obs_b:
            assert np.abs(obs_b[key].astype(float) - obs_d[key].astype(float)).max() <= 1, key
        actions = rng.integers(len(BANK), size=2)
        obs_b, rew_b, done_b, info_b = batched.step(actions)
        obs_d, rew_d, done_d, info_d = dummy.step(actions)
        np.testing.assert_array_equal(done_b, done_d)
        np.testing.assert_allclose(rew_b, rew_d, atol=0.05)
        assert rew_b.dtype == np.float32 and done_b.dtype == np.bool_
        for b, d in zip(info_b, info_d):
            assert b["prompt"] == d["prompt"] and b["query"] == d["query"]
            assert b["TimeLimit.truncated"] is False and ("terminal_observation" in b) == ("terminal_observation" in d)
            if "terminal_observation" in b:
                assert set(b["terminal_observation"]) == {"image", "segment", "timestep"}
                assert b["terminal_observation"]["segment"] == ENV_KWARGS["num_refinements"]
    assert [i["query"] for i in batched.reset_infos] == [i["query"] for i in dummy.reset_infos]
    batched.close()


def test_sb3_checks_and_a_short_ppo_run():
    from stable_baselines3 import PPO

    check_env(make_single(), warn=True)  # SB3's checker on the per-sub-env form
    venv = sb3.make_sb3_vec_env(2, prompt_bank=BANK, seed=0, backbone=tiny_pipe(), **ENV_KWARGS)
    keys, shapes, dtypes = obs_space_info(venv.observation_space)
    assert sorted(keys) == ["image", "segment", "timestep"] and shapes["image"] == (36, 36, 3)
    assert venv.get_attr("num_envs") == [2, 2] and venv.env_is_wrapped(gym.Wrapper) == [False, False]
    model = PPO("MultiInputPolicy", VecCheckNan(venv, raise_exception=True), n_steps=4, batch_size=8, seed=0)
    model.learn(total_timesteps=8)
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (2,)
    venv.close()


def test_sb3_vec_env_refuses_what_sb3_cannot_take():
    with pytest.raises(ValueError, match="AutoresetMode.DISABLED"):
        sb3.SB3VecEnv(vector_wrappers.DropTextObservation(make_vec(mode=AutoresetMode.NEXT_STEP)))
    with pytest.raises(TypeError, match="no Text spaces.*query"):
        sb3.SB3VecEnv(make_vec())
    with pytest.raises(TypeError, match="action"):
        sb3.SB3VecEnv(vector_wrappers.DropTextObservation(make_vec()))
    with pytest.raises(TypeError, match="VectorEnv"):
        sb3.SB3VecEnv(make_single())


def test_sb3_vec_env_options_reach_each_sub_env():
    venv = sb3.make_sb3_vec_env(2, modifier_bank=["", "x"], backbone=tiny_pipe(), **ENV_KWARGS)
    venv.set_options([{"query": "a red circle"}, {"query": "a blue square"}])
    venv.reset()
    assert [i["query"] for i in venv.reset_infos] == ["a red circle", "a blue square"]
    _, _, _, infos = venv.step(np.array([1, 0]))
    assert [i["prompt"] for i in infos] == ["a red circle, x", "a blue square"]


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_wrappers_follow_each_autoreset_mode(mode):
    envs = vector_wrappers.DiscretizePrompt(
        vector_wrappers.DropTextObservation(make_vec(mode=mode, num_refinements=1)), prompts=BANK
    )
    obs, info = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    obs, _, terminated, _, info = envs.step([1, 1])
    assert terminated.all()
    if mode == AutoresetMode.SAME_STEP:  # the ended episodes' last obs and info, then the new episodes'
        assert all(set(final) == {"image", "segment", "timestep"} for final in info["final_obs"])
    else:
        obs, _, _, _, info = envs.step([0, 0])  # the autoreset step
    new_queries = info["query"].tolist()
    obs, _, _, _, info = envs.step([1, 2])
    stepped = info["final_info"] if mode == AutoresetMode.SAME_STEP else info
    assert stepped["prompt"].tolist() == [f"{new_queries[0]}, bright colours", "a dark square"]
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        envs.step([0])


def test_vector_wrappers_check_their_arguments_as_the_single_ones():
    with pytest.raises(ValueError, match="exactly one of"):
        vector_wrappers.DiscretizePrompt(make_vec())
    with pytest.raises(ValueError, match="lacks"):
        vector_wrappers.DropTextObservation(make_vec(), keep=["pixels"])

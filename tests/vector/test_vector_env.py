"""PromptLoopVectorEnv: equivalence with single envs, batched model calls, autoreset modes, async refusal."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import promptloop_env  # noqa: F401
from promptloop_env.testing import tiny_pipe
from promptloop_env.vector_env import PromptLoopVectorEnv

# Grey levels by which an image of a sub-episode may differ from the same episode run alone. Batched and single
# calls go through kernels chosen per shape (oneDNN / BLAS blocking, vectorised tails), which sum in other orders:
# float results differ in the last bits and, after rounding to uint8, by one grey level on some CPUs (AMD EPYC does
# so for a batched VAE decode, every run). Bit-exactness holds only within one process layout (same batch
# composition, same thread count), which is what the replay tests assert.
BATCH_TOLERANCE = 1


def mean_brightness(images, queries):
    # A smooth reward: BATCH_TOLERANCE grey levels of batching noise move it by at most BATCH_TOLERANCE / 255.
    return [float(image.mean()) / 255.0 for image in images]


def env_kwargs(**overrides):
    kwargs = {
        "backbone": tiny_pipe(),
        "reward": mean_brightness,
        "num_inference_steps": 8,
        "num_refinements": 4,
        "preview": "latent_rgb",
        "preview_size": 32,
    }
    return {**kwargs, **overrides}


def make_vec(num_envs=3, **overrides):
    return gym.make_vec(
        "PromptLoop-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs(**overrides)
    )


def max_diff(a, b):
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def test_make_vec_builds_the_batched_env_with_batched_spaces():
    envs = make_vec(2)
    assert isinstance(envs, PromptLoopVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert gym.make_vec("PromptLoop-v0", num_envs=2, **env_kwargs()).unwrapped.__class__ is PromptLoopVectorEnv
    obs, info = envs.reset(seed=0, options={"query": ["a red circle", "a blue square"]})
    assert envs.observation_space.contains(obs)
    assert obs["image"].shape == (2, 32, 32, 3) and obs["image"].dtype == np.uint8
    assert obs["query"] == obs["prompt"] == ("a red circle", "a blue square")
    assert obs["segment"].tolist() == [0, 0] and obs["timestep"].shape == (2, 1)
    assert envs.action_space.contains(("a cat", "a dog"))
    assert info["noise_seed"].shape == (2,) and info["_noise_seed"].all()
    obs, reward, terminated, truncated, info = envs.step(["a red circle, bright", "a blue square"])
    assert envs.observation_space.contains(obs)
    assert obs["prompt"] == ("a red circle, bright", "a blue square") and info["prompts"][0] == [
        "a red circle, bright"
    ]
    assert reward.tolist() == [0.0, 0.0] and not terminated.any() and not truncated.any()
    envs.close()
    envs.close()


@pytest.mark.parametrize("preview", ["latent_rgb", "vae"])
def test_sub_episodes_equal_single_envs_with_seed_plus_i(preview):
    # Random schedules (per-episode refinement points), guidance on, queries drawn from the env's own rng.
    kwargs = env_kwargs(refine_schedule="random", guidance_scale=3.0, preview=preview)
    envs = gym.make_vec("PromptLoop-v0", num_envs=3, **kwargs)
    singles = [gym.make("PromptLoop-v0", **kwargs) for _ in range(3)]
    obs, info = envs.reset(seed=7)
    starts = [env.reset(seed=7 + i) for i, env in enumerate(singles)]
    assert len({tuple(s) for s in info["refine_steps"]}) > 1, "the schedules should differ between sub-envs"
    for i, (single_obs, single_info) in enumerate(starts):
        assert obs["query"][i] == single_obs["query"]
        assert info["noise_seed"][i] == single_info["noise_seed"]
        assert list(info["refine_steps"][i]) == single_info["refine_steps"]
        assert max_diff(obs["image"][i], single_obs["image"]) <= BATCH_TOLERANCE
    # Two full episodes: the second comes from the NEXT_STEP autoreset, continuing each sub-env's rng.
    for _episode in range(2):
        for segment in range(4):
            actions = [f"a red circle {segment}", "a blue square", "a photo of a cat"][: envs.num_envs]
            obs, reward, terminated, _, info = envs.step(actions)
            for i, env in enumerate(singles):
                single_obs, single_reward, single_terminated, _, single_info = env.step(actions[i])
                assert max_diff(obs["image"][i], single_obs["image"]) <= BATCH_TOLERANCE
                assert terminated[i] == single_terminated and obs["segment"][i] == single_obs["segment"]
                assert reward[i] == pytest.approx(single_reward, abs=(BATCH_TOLERANCE + 0.01) / 255)
                if single_terminated:
                    assert max_diff(info["final_image"][i], single_info["final_image"]) <= BATCH_TOLERANCE
        assert terminated.all()
        obs, reward, terminated, _, info = envs.step(["ignored"] * 3)
        for i, env in enumerate(singles):
            single_obs, single_info = env.reset()
            assert obs["query"][i] == single_obs["query"] and obs["segment"][i] == 0 and reward[i] == 0.0
            assert info["noise_seed"][i] == single_info["noise_seed"]
            assert max_diff(obs["image"][i], single_obs["image"]) <= BATCH_TOLERANCE


def count_unet_calls(backbone):
    calls = []
    handle = backbone.pipe.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls, handle


@pytest.mark.parametrize("schedule", ["uniform", "random"])
def test_one_batched_model_call_per_denoising_step(schedule):
    envs = make_vec(4, refine_schedule=schedule, guidance_scale=3.0)
    envs.reset(seed=0)
    calls, handle = count_unet_calls(envs.unwrapped.core.backbone)
    try:
        expected = 0
        for _ in range(4):
            segments = [ep.refine_steps + (8,) for ep in envs.unwrapped._episodes]
            expected += max(
                s[ep.segment + 1] - s[ep.segment] for s, ep in zip(segments, envs.unwrapped._episodes, strict=True)
            )
            envs.step(["a red circle"] * 4)
    finally:
        handle.remove()
    assert len(calls) == expected
    if schedule == "uniform":
        assert calls == [8] * 8  # 4 episodes x (conditional + unconditional), one call per denoising step


def test_reward_is_one_batched_call_per_step():
    seen = []

    def reward(images, queries):
        seen.append(len(queries))
        return [0.0] * len(queries)

    envs = make_vec(3, reward=reward, num_refinements=2)
    envs.reset(seed=0)
    envs.step(["a"] * 3)
    envs.step(["b"] * 3)
    assert seen == [3]


def test_per_env_reset_options_and_seed_list():
    envs = make_vec(2)
    obs, info = envs.reset(seed=[3, None], options={"query": ["a red circle", None], "noise_seed": [11, 12]})
    assert obs["query"][0] == "a red circle" and obs["query"][1] in envs.unwrapped.core.queries
    assert info["noise_seed"].tolist() == [11, 12]
    obs, info = envs.reset(options={"query": "a cat", "noise_seed": 5})
    assert obs["query"] == ("a cat", "a cat") and info["noise_seed"].tolist() == [5, 5]
    with pytest.raises(ValueError, match="valid: 'query', 'noise_seed', 'reset_mask'"):
        envs.reset(options={"prompt": "x"})
    with pytest.raises(ValueError, match="num_envs=2"):
        envs.reset(options={"query": ["a", "b", "c"]})


def test_bad_actions_are_rejected_with_clear_messages():
    envs = make_vec(2)
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(["a", "b"])
    envs.reset(seed=0)
    with pytest.raises(TypeError, match="sequence of num_envs=2"):
        envs.step("a single prompt")
    with pytest.raises(TypeError, match="sequence of num_envs=2"):
        envs.step(["only one"])
    with pytest.raises(TypeError, match="must be a str"):
        envs.step(["fine", 3])
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        PromptLoopVectorEnv(num_envs=0, **env_kwargs())
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        PromptLoopVectorEnv(num_envs=1, autoreset_mode="sometimes", **env_kwargs())


def test_same_step_autoreset_puts_the_terminal_step_in_final_info():
    envs = make_vec(2, num_refinements=2, autoreset_mode=AutoresetMode.SAME_STEP)
    envs.reset(seed=0, options={"query": "a red circle"})
    envs.step(["a", "b"])
    obs, reward, terminated, _, info = envs.step(["a", "b"])
    assert terminated.all() and (reward != 0).all()
    assert obs["segment"].tolist() == [0, 0]  # already reset
    assert info["_final_obs"].all() and info["final_obs"][0]["segment"] == 2
    assert info["final_info"]["final_image"].shape == (2, 64, 64, 3)
    assert info["final_info"]["reward_components"]["mean_brightness"] == pytest.approx(reward)
    obs, reward, terminated, _, _ = envs.step(["c", "d"])
    assert obs["segment"].tolist() == [1, 1] and not terminated.any()


def test_disabled_autoreset_and_partial_reset_mask():
    envs = make_vec(2, num_refinements=2, autoreset_mode="Disabled")
    envs.reset(seed=0)
    envs.step(["a", "b"])
    envs.step(["a", "b"])
    with pytest.raises(RuntimeError, match="reset_mask"):
        envs.step(["a", "b"])
    obs, info = envs.reset(options={"reset_mask": np.array([True, False]), "query": "a dog"})
    assert obs["segment"].tolist() == [0, 2] and info["_query"].tolist() == [True, False]
    with pytest.raises(TypeError, match="reset_mask"):
        envs.reset(options={"reset_mask": [True, False]})


def test_render_returns_each_preview():
    envs = make_vec(2, render_mode="rgb_array")
    envs.reset(seed=0)
    frames = envs.render()
    assert len(frames) == 2 and frames[0].shape == (32, 32, 3)
    assert make_vec(1).render() is None


def test_sync_vector_env_equals_the_batched_env():
    envs = make_vec(2, num_refinements=2)
    sync = gym.make_vec("PromptLoop-v0", num_envs=2, vectorization_mode="sync", **env_kwargs(num_refinements=2))
    assert isinstance(sync, gym.vector.SyncVectorEnv)
    a, _ = envs.reset(seed=1, options={"query": "a cat"})
    b, _ = sync.reset(seed=1, options={"query": "a cat"})
    assert a["query"] == b["query"] and max_diff(a["image"], b["image"]) <= BATCH_TOLERANCE
    for _ in range(2):
        a, ra, ta, _, _ = envs.step(("a cat", "a dog"))
        b, rb, tb, _, _ = sync.step(("a cat", "a dog"))
        assert max_diff(a["image"], b["image"]) <= BATCH_TOLERANCE and (ta == tb).all()
        np.testing.assert_allclose(ra, rb, atol=(BATCH_TOLERANCE + 0.01) / 255)


def test_async_with_shared_memory_is_refused_and_works_without():
    kwargs = env_kwargs(backbone="tiny", reward="jpeg-incompressibility", num_refinements=2)
    with pytest.raises(ValueError, match="shared_memory") as caught:
        gym.make_vec("PromptLoop-v0", num_envs=2, vectorization_mode="async", **kwargs)
    assert "vector_entry_point" in str(caught.value.__cause__ or caught.value)
    envs = gym.make_vec(
        "PromptLoop-v0", num_envs=2, vectorization_mode="async", vector_kwargs={"shared_memory": False}, **kwargs
    )
    try:
        obs, _ = envs.reset(seed=0, options={"query": "a red circle"})
        assert obs["query"] == ("a red circle", "a red circle")
        obs, *_ = envs.step(("a cat", "a dog"))
        assert obs["prompt"] == ("a cat", "a dog")
    finally:
        envs.close()

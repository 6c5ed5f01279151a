"""The replay guarantee: identity actions reproduce plain ``StableDiffusionPipeline.__call__`` bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptloop_env.testing import run_episode, tiny_pipe


def pipeline_image(pipe, query, info, steps, **kwargs):
    generator = torch.Generator("cpu").manual_seed(info["noise_seed"])
    out = pipe(query, num_inference_steps=steps, generator=generator, output_type="np", **kwargs).images
    return (out * 255).round().astype(np.uint8)[0]


@pytest.mark.parametrize(
    ("scheduler", "prediction_type"),
    [
        ("ddim", "epsilon"),
        ("euler-ancestral", "epsilon"),
        ("dpm++", "epsilon"),
        ("euler", "v_prediction"),
        ("ddpm", "epsilon"),
        ("unipc", "epsilon"),
        ("dpm++-sde", "epsilon"),
    ],
)
@pytest.mark.parametrize("guidance_scale", [1.0, 5.0])
def test_identity_episode_replays_pipeline(make_env, scheduler, prediction_type, guidance_scale):
    pipe = tiny_pipe(scheduler, prediction_type)
    env = make_env(backbone=pipe, guidance_scale=guidance_scale, num_inference_steps=10, num_refinements=5)
    _, _, info = run_episode(env, "a red circle on the left", seed=3)
    expected = pipeline_image(pipe, "a red circle on the left", info, 10, guidance_scale=guidance_scale)
    np.testing.assert_array_equal(info["final_image"], expected)


def test_replay_with_negative_prompt(make_env):
    pipe = tiny_pipe("euler-ancestral")
    env = make_env(backbone=pipe, guidance_scale=4.0, negative_prompt="blurry dark", refine_schedule="random")
    _, _, info = run_episode(env, "a blue square", seed=11)
    expected = pipeline_image(pipe, "a blue square", info, 8, guidance_scale=4.0, negative_prompt="blurry dark")
    np.testing.assert_array_equal(info["final_image"], expected)
    # The negative prompt matters: without it the image differs.
    plain = pipeline_image(pipe, "a blue square", info, 8, guidance_scale=4.0)
    assert not np.array_equal(plain, expected)


def test_default_guidance_is_the_pipelines(make_env):
    pipe = tiny_pipe("ddim")
    env = make_env(backbone=pipe)
    _, _, info = run_episode(env, "a cat", seed=0)
    assert info["guidance_scale"] == 7.5
    np.testing.assert_array_equal(info["final_image"], pipeline_image(pipe, "a cat", info, 8))


@pytest.mark.parametrize("scheduler", ["ddim", "dpm++", "euler-ancestral"])
def test_prompt_change_matches_diffusers_callback_swap(make_env, scheduler):
    """Switching prompt at a refinement point equals diffusers' own ``callback_on_step_end`` swap."""
    pipe = tiny_pipe(scheduler)
    steps, switch = 8, 4
    env = make_env(backbone=pipe, num_inference_steps=steps, num_refinements=2, guidance_scale=5.0)
    first, second = "a red circle", "a large green triangle at the top"
    _, _, info = run_episode(env, first, seed=5, actions=[first, second])
    assert info["refine_steps"] == [0, switch]
    new_cond, _ = pipe.encode_prompt(second, "cpu", 1, False)

    def swap(pipeline, i, t, kwargs):
        if i == switch - 1:  # the callback runs after scheduler.step of step i
            embeds = kwargs["prompt_embeds"]
            half = embeds.shape[0] // 2
            return {"prompt_embeds": torch.cat([embeds[:half], new_cond])}
        return {}

    generator = torch.Generator("cpu").manual_seed(info["noise_seed"])
    out = pipe(
        first,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=generator,
        output_type="np",
        callback_on_step_end=swap,
        callback_on_step_end_tensor_inputs=["prompt_embeds"],
    ).images
    np.testing.assert_array_equal(info["final_image"], (out * 255).round().astype(np.uint8)[0])
    # And the change had an effect.
    _, _, same = run_episode(env, first, seed=5, actions=[first, first])
    assert same["noise_seed"] == info["noise_seed"]
    assert not np.array_equal(same["final_image"], info["final_image"])


def test_local_folder_round_trip(tmp_path, make_env):
    """Save the tiny pipeline and load it back by path through the same code users use."""
    pipe = tiny_pipe("ddim")
    pipe.save_pretrained(tmp_path / "tiny-sd", safe_serialization=True)
    assert list((tmp_path / "tiny-sd" / "unet").glob("*.safetensors"))
    env = make_env(backbone=str(tmp_path / "tiny-sd"), guidance_scale=3.0)
    _, _, info = run_episode(env, "a photo of a dog", seed=2)
    expected = pipeline_image(pipe, "a photo of a dog", info, 8, guidance_scale=3.0)
    np.testing.assert_array_equal(info["final_image"], expected)


def test_replay_holds_with_the_vae_preview(make_env):
    """The default preview decodes x0 at every refinement point and leaves the trajectory and its generator alone."""
    pipe = tiny_pipe("euler-ancestral")  # a stochastic sampler: any extra draw from the generator would show
    env = make_env(backbone=pipe, preview="vae", guidance_scale=5.0, refine_schedule="random")
    observations, _, info = run_episode(env, "a red circle on the left", seed=4)
    expected = pipeline_image(pipe, "a red circle on the left", info, 8, guidance_scale=5.0)
    np.testing.assert_array_equal(info["final_image"], expected)
    obs = observations[-1]
    assert obs["image"].shape == (32, 32, 3) and obs["image"].std() > 0  # the last preview: the final image, resized

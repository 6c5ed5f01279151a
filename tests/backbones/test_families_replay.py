"""SDXL, SD3 and FLUX backbones: the replay guarantee, prompt changes, determinism and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_pipes import FAMILY_CASES, family_pipe, guidance, make_family_env, pipeline_image

from promptloop_env.backbones import load_backbone, wrap_pipeline
from promptloop_env.backbones.base import to_uint8
from promptloop_env.backbones.flux import FluxBackbone
from promptloop_env.backbones.sd3 import StableDiffusion3Backbone
from promptloop_env.backbones.sdxl import StableDiffusionXLBackbone
from promptloop_env.testing import run_episode

CASES = sorted(FAMILY_CASES)
QUERY = "a red circle on the left"


@pytest.mark.parametrize("case", CASES)
def test_identity_episode_replays_pipeline(case):
    pipe = family_pipe(case)
    env = make_family_env(pipe, guidance_scale=guidance(case), num_inference_steps=5, num_refinements=3)
    _, _, info = run_episode(env, QUERY, seed=3)
    expected = pipeline_image(pipe, QUERY, info["noise_seed"], 5, guidance_scale=guidance(case))
    np.testing.assert_array_equal(info["final_image"], expected)


@pytest.mark.parametrize("case", ["sdxl", "sd3", "sd3-no-t5"])
def test_replay_with_negative_prompt(case):
    pipe = family_pipe(case)
    env = make_family_env(pipe, guidance_scale=4.0, negative_prompt="blurry dark")
    _, _, info = run_episode(env, "a blue square", seed=11)
    expected = pipeline_image(
        pipe, "a blue square", info["noise_seed"], 4, guidance_scale=4.0, negative_prompt="blurry dark"
    )
    np.testing.assert_array_equal(info["final_image"], expected)
    assert not np.array_equal(
        expected, pipeline_image(pipe, "a blue square", info["noise_seed"], 4, guidance_scale=4.0)
    )


def test_sdxl_empty_negative_is_zeros_unless_given():
    backbone = wrap_pipeline(family_pipe("sdxl"))
    zeros = backbone.encode_negative(None)
    assert all(bool((v == 0).all()) for v in zeros.values())
    assert not bool((backbone.encode_negative("")["prompt_embeds"] == 0).all())


def test_default_guidance_is_the_pipelines():
    defaults = {"sdxl": 5.0, "sd3": 7.0, "flux-dev": 3.5}
    for case, scale in defaults.items():
        assert wrap_pipeline(family_pipe(case)).default_guidance_scale == scale
    pipe = family_pipe("sd3")
    _, _, info = run_episode(make_family_env(pipe), "a cat", seed=0)
    np.testing.assert_array_equal(info["final_image"], pipeline_image(pipe, "a cat", info["noise_seed"], 4))


def test_flux_true_cfg_replays_pipeline():
    pipe = family_pipe("flux-dev")
    backbone = FluxBackbone(pipe, true_cfg_scale=2.0)
    env = make_family_env(backbone, negative_prompt="blurry")
    _, _, info = run_episode(env, QUERY, seed=4)
    expected = pipeline_image(pipe, QUERY, info["noise_seed"], 4, negative_prompt="blurry", true_cfg_scale=2.0)
    np.testing.assert_array_equal(info["final_image"], expected)
    assert not np.array_equal(expected, pipeline_image(pipe, QUERY, info["noise_seed"], 4))


def _encode_like_pipeline(case: str, pipe, second: str):
    if case.startswith("sdxl"):
        embeds, _, pooled, _ = pipe.encode_prompt(second, device="cpu", do_classifier_free_guidance=False)
        return embeds, pooled, ["prompt_embeds", "add_text_embeds"]
    if case.startswith("sd3"):
        embeds, _, pooled, _ = pipe.encode_prompt(second, None, None, device="cpu", do_classifier_free_guidance=False)
        return embeds, pooled, ["prompt_embeds", "pooled_prompt_embeds"]
    embeds, pooled, _ = pipe.encode_prompt(second, None, device="cpu")
    return embeds, pooled, ["prompt_embeds", "pooled_prompt_embeds"]


def _swap_callback(case: str, pipe, second: str, switch: int):
    """diffusers' own way to change the prompt after step ``switch - 1`` (the callback runs after the step)."""
    guided = guidance(case) > 1.0 and not case.startswith("flux")
    with torch.no_grad():  # as inside __call__: T5 takes another kernel path with autograd on
        embeds, pooled, names = _encode_like_pipeline(case, pipe, second)

    def swap(pipeline, i, t, kwargs):
        if i != switch - 1:
            return {}
        new = {}
        for name, value in zip(names, (embeds, pooled), strict=True):
            current = kwargs[name]
            replacement = torch.cat([current[: current.shape[0] // 2], value]) if guided else value
            if case.startswith("flux") and name == "pooled_prompt_embeds":
                current.copy_(replacement)  # FluxPipeline reads no pooled embeddings back from the callback
            else:
                new[name] = replacement
        return new

    return swap, names


@pytest.mark.parametrize("case", ["sdxl", "sdxl-turbo", "sd3", "flux-dev"])
def test_prompt_change_matches_diffusers_callback_swap(case, monkeypatch):
    pipe = family_pipe(case)
    steps, switch = 6, 3
    env = make_family_env(pipe, guidance_scale=guidance(case), num_inference_steps=steps, num_refinements=2)
    first, second = "a red circle", "a large green triangle at the top"
    _, _, info = run_episode(env, first, seed=5, actions=[first, second])
    assert info["refine_steps"] == [0, switch]
    swap, names = _swap_callback(case, pipe, second, switch)
    monkeypatch.setattr(
        pipe, "_callback_tensor_inputs", sorted({*pipe._callback_tensor_inputs, *names}), raising=False
    )
    expected = pipeline_image(
        pipe,
        first,
        info["noise_seed"],
        steps,
        guidance_scale=guidance(case),
        callback_on_step_end=swap,
        callback_on_step_end_tensor_inputs=names,
    )
    np.testing.assert_array_equal(info["final_image"], expected)
    _, _, same = run_episode(env, first, seed=5, actions=[first, first])
    assert not np.array_equal(same["final_image"], info["final_image"])


@pytest.mark.parametrize("case", ["sdxl", "sd3", "flux-dev"])
def test_determinism(case):
    env = make_family_env(family_pipe(case), guidance_scale=guidance(case), num_inference_steps=3, num_refinements=3)
    actions = ["a cat", "a red cat", "a red cat in the sky"]
    obs_a, _, info_a = run_episode(env, "a cat", seed=7, actions=actions)
    obs_b, _, info_b = run_episode(env, "a cat", seed=7, actions=actions)
    for a, b in zip(obs_a, obs_b, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(info_a["final_image"], info_b["final_image"])
    _, _, info_c = run_episode(env, "a cat", seed=8, actions=actions)
    assert info_c["noise_seed"] != info_a["noise_seed"]
    assert not np.array_equal(info_c["final_image"], info_a["final_image"])


@pytest.mark.parametrize("case", ["sdxl", "sdxl-turbo", "sd3", "flux-dev"])
def test_batched_denoise_matches_one_by_one(case):
    backbone = wrap_pipeline(family_pipe(case))
    prompts = ["a red circle", "a blue square at the top", "a dog"]
    seeds, steps, scale = [1, 2, 3], 4, guidance(case)

    def run(batched: bool) -> np.ndarray:
        trajs = [backbone.start(s, steps, scale) for s in seeds]
        embeds = [backbone.encode(p)[0] for p in prompts]
        # Staggered: the trajectories sit at different steps when they share a batch.
        if batched:
            backbone.denoise(trajs, embeds, [1, 2, 0])
            backbone.denoise(trajs, embeds, [3, 2, 4])
        else:
            for traj, emb in zip(trajs, embeds, strict=True):
                backbone.denoise([traj], [emb], [steps])
        assert all(t.done and t.x0 is not None for t in trajs)
        return to_uint8(backbone.decode(torch.cat([t.latents for t in trajs])))

    together, alone = run(True), run(False)
    assert np.abs(together.astype(int) - alone.astype(int)).max() <= 1


def test_mixed_guidance_in_one_denoise_call():
    backbone = wrap_pipeline(family_pipe("sdxl"))
    emb = backbone.encode("a cat")[0]
    guided, plain = backbone.start(0, 3, 5.0), backbone.start(0, 3, 1.0)
    backbone.denoise([guided, plain], [emb, emb], [3, 3])
    assert guided.negative is not None and plain.negative is None
    assert not torch.equal(guided.latents, plain.latents)


@pytest.mark.parametrize(
    ("case", "cls"),
    [("sdxl", StableDiffusionXLBackbone), ("sd3-no-t5", StableDiffusion3Backbone), ("flux-schnell", FluxBackbone)],
)
def test_family_chosen_by_pipeline_class(case, cls):
    backbone = load_backbone(family_pipe(case))
    assert type(backbone) is cls
    assert backbone.image_size == (64, 64)

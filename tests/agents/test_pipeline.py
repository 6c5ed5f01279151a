"""PromptLoopPipeline: batched generation, seeds, replay, plain sampling, and one policy on every family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from promptloop_agents import PromptLoopPipeline, PromptLoopPipelineOutput
from promptloop_agents.pipeline import noise_seeds_for
from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.model_card import GenerationSettings
from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY

GENERATION = GenerationSettings(num_inference_steps=4, num_refinements=2, preview="latent_rgb", preview_size=32)
QUERIES = ["a red circle left of a blue square", "two triangles", "a yellow square"]


@pytest.fixture(scope="module")
def compose_policy():
    """The shipped toy-compose policy, greedy (it writes real rewrites, unlike a random one)."""
    return MLLMAgent.from_pretrained(SHIPPED_TOY_COMPOSE_POLICY, do_sample=False)


@pytest.fixture(scope="module")
def pipe(compose_policy):
    return PromptLoopPipeline("tiny", compose_policy, generation=GENERATION)


def test_batched_generation_equals_one_by_one(pipe):
    batched = pipe(QUERIES, seed=10, output_type="np", return_trajectory=True)
    assert isinstance(batched, PromptLoopPipelineOutput)
    assert batched.images.shape == (3, 64, 64, 3) and batched.images.dtype == np.uint8
    assert batched.noise_seeds == [10, 11, 12] and batched.queries == QUERIES
    assert all(len(p) == 2 for p in batched.prompts) and batched.refine_steps == [[0, 2]] * 3
    assert [len(p) for p in batched.previews] == [2, 2, 2] and batched.previews[0][0].shape == (32, 32, 3)
    for i, query in enumerate(QUERIES):
        single = pipe(query, seed=10 + i, output_type="np", return_trajectory=True)
        assert single.prompts[0] == batched.prompts[i]
        # batched kernels may round differently from batch-of-one ones: the hardware's tolerance, in uint8 steps
        assert np.abs(single.images[0].astype(int) - batched.images[i]).max() <= 2
        assert np.abs(single.previews[0][1].astype(int) - batched.previews[i][1]).max() <= 2


def test_replay_is_bit_exact(pipe):
    out = pipe(QUERIES[0], seed=3, output_type="np")
    replayed = pipe.replay(out.prompts[0], out.noise_seeds[0], out.refine_steps[0], output_type="np")
    assert np.array_equal(replayed, out.images[0])
    assert isinstance(pipe.replay(out.prompts[0], 3, out.refine_steps[0]), Image.Image)
    # a random schedule's points are drawn from the image's seed and kept in the output
    drawn = pipe(QUERIES[1], seed=5, refine_schedule="random", num_inference_steps=6, output_type="np")
    assert drawn.refine_steps == pipe(QUERIES[1], seed=5, refine_schedule="random", num_inference_steps=6).refine_steps
    again = pipe.replay(drawn.prompts[0], 5, drawn.refine_steps[0], num_inference_steps=6, output_type="np")
    assert np.array_equal(again, drawn.images[0])


def test_plain_sampling_is_the_diffusers_pipeline(pipe):
    out = pipe("a red circle", num_refinements=0, generator=torch.Generator().manual_seed(7), output_type="np")
    assert out.prompts == [[]] and out.noise_seeds == [7]
    reference = pipe.backbone.pipe(
        "a red circle",
        num_inference_steps=4,
        guidance_scale=pipe.backbone.default_guidance_scale,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    ).images
    assert np.array_equal(out.images[0], (reference[0] * 255).round().astype(np.uint8))


def test_seeds_images_per_prompt_and_modes(pipe):
    out = pipe(QUERIES[:2], num_images_per_prompt=2, seed=[4, 5, 6, 7], mode="a-priori")
    assert len(out.images) == 4 and out.queries == [QUERIES[0]] * 2 + [QUERIES[1]] * 2
    assert out.noise_seeds == [4, 5, 6, 7] and out.previews is None
    assert isinstance(out.images[0], Image.Image)
    assert pipe(QUERIES[0], generator=[torch.Generator().manual_seed(9)]).noise_seeds == [9]
    assert len(set(noise_seeds_for(2, None, None))) == 2  # fresh seeds, one per image
    with pytest.raises(ValueError, match="not both"):
        pipe(QUERIES[0], seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="one per image"):
        pipe(QUERIES, seed=[1, 2])
    with pytest.raises(ValueError, match="mode"):
        pipe(QUERIES[0], mode="open-loop")
    with pytest.raises(ValueError, match="no policy"):
        PromptLoopPipeline("tiny", None, generation=GENERATION)(QUERIES[0])


def test_sampling_policy_is_reproducible_and_leaves_global_rng(compose_policy):
    settings = {**compose_policy.settings(), "do_sample": True}
    sampler = MLLMAgent(compose_policy.model, compose_policy.processor, **settings)
    pipe = PromptLoopPipeline("tiny", sampler, generation=GENERATION)
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    first = pipe(QUERIES, seed=0, output_type="np")
    assert torch.equal(torch.rand(1), expected)
    second = pipe(QUERIES, seed=0, output_type="np")
    assert first.prompts == second.prompts and np.array_equal(first.images, second.images)


def test_batch_size_and_to(pipe):
    whole = pipe(QUERIES, seed=0, output_type="np")
    chunked = pipe(QUERIES, seed=0, output_type="np", batch_size=2)
    assert chunked.prompts == whole.prompts and np.abs(chunked.images.astype(int) - whole.images).max() <= 2
    assert pipe.to("cpu") is pipe and pipe.device.type == "cpu"


@pytest.mark.parametrize("backbone", ["tiny", "tiny-sdxl", "tiny-sd3", "tiny-flux"])
def test_one_policy_on_every_family(compose_policy, backbone):
    """Plug-and-play: the same policy refines the prompts of SD1.5, SDXL, SD3 and FLUX stand-ins unchanged."""
    pipe = PromptLoopPipeline(backbone, compose_policy, generation=GENERATION)
    out = pipe(QUERIES[:2], seed=0, output_type="np")
    assert out.images.shape[0] == 2 and out.images.dtype == np.uint8
    assert out.prompts[1][0] != QUERIES[1]  # the policy rewrote the query
    replayed = pipe.replay(out.prompts[0], 0, out.refine_steps[0], output_type="np")
    assert np.abs(replayed.astype(int) - out.images[0]).max() <= 2


def test_from_pretrained_takes_the_policy_folders_settings():
    pipe = PromptLoopPipeline.from_pretrained("tiny", "toy-compose", torch_dtype="float32", device="cpu")
    assert pipe.generation.refine_schedule == [0, 9, 11, 13, 15] and pipe.generation.preview_size == 64
    assert not pipe.policy.do_sample and pipe.policy.image_size == 112
    out = pipe(QUERIES[0], num_inference_steps=4, num_refinements=2, seed=0, return_trajectory=True)
    assert out.refine_steps == [[0, 2]] and out.previews[0][0].shape == (64, 64, 3)
    with pytest.raises(ValueError, match="policy folder"):
        PromptLoopPipeline.from_pretrained("tiny", None, max_new_tokens=3)


def test_from_pretrained_shows_loading_bars_only_when_asked(capfd):
    PromptLoopPipeline.from_pretrained("tiny", "toy-compose", device="cpu")
    assert "Loading" not in capfd.readouterr().err
    PromptLoopPipeline.from_pretrained("tiny", "toy-compose", device="cpu", progress=True)
    assert "Loading weights" in capfd.readouterr().err  # transformers' bar of the policy's weights

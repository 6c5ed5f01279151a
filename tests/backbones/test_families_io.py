"""SDXL, SD3 and FLUX backbones: previews, folders, registry names, truncation and memory options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_pipes import family_pipe, guidance, make_family_env, pipeline_image

from promptloop_env.backbones import (
    BACKBONES,
    HubModel,
    PackageFolder,
    PipelineFactory,
    families,
    family_of,
    load_backbone,
    wrap_pipeline,
)
from promptloop_env.backbones.base import LatentRGB, to_uint8
from promptloop_env.backbones.tiny import TINY_FLUX_SAMPLE_SIZE
from promptloop_env.testing import run_episode

LATENT_CHANNELS = {"sdxl": 4, "sd3": 16, "flux-dev": 16}


def _tiny_taesd(folder, latent_channels: int, **config) -> str:
    from diffusers import AutoencoderTiny

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoencoderTiny(
            encoder_block_out_channels=(16, 16, 16, 16),
            decoder_block_out_channels=(16, 16, 16, 16),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
            latent_channels=latent_channels,
            **config,
        )
    model.save_pretrained(folder, safe_serialization=True)
    return str(folder)


@pytest.mark.parametrize("case", sorted(LATENT_CHANNELS))
@pytest.mark.parametrize("preview", ["vae", "latent_rgb", "taesd", "none"])
def test_preview_shapes(case, preview, tmp_path):
    taesd = None
    if preview == "taesd":
        taesd = _tiny_taesd(tmp_path / "taesd", LATENT_CHANNELS[case], scaling_factor=1.5, shift_factor=0.1)
    env = make_family_env(
        family_pipe(case), preview=preview, preview_size=24, taesd=taesd, guidance_scale=guidance(case)
    )
    observations, _, info = run_episode(env, "a cat", seed=0)
    for obs in observations:
        assert obs["image"].shape == (24, 24, 3) and obs["image"].dtype == np.uint8
        assert env.observation_space["image"].contains(obs["image"])
    if preview == "latent_rgb":  # the previews change as the x0 estimate sharpens
        assert not np.array_equal(observations[0]["image"], observations[-2]["image"])
    assert info["final_image"].shape == (64, 64, 3)


def test_each_family_has_the_community_latent_rgb_map_and_taesd():
    for case, family in (("sdxl", "sdxl"), ("sd3", "sd3"), ("flux-dev", "flux")):
        backbone = wrap_pipeline(family_pipe(case))
        assert backbone.family == family and type(backbone) is families()[family]
        assert backbone.latent_rgb == LatentRGB.for_family(family)
        assert len(backbone.latent_rgb.factors) == LATENT_CHANNELS[case]
        assert len(backbone.latent_rgb.bias) == 3
    # The maps of latent_rgb.json, spot-checked against ComfyUI's latent formats.
    assert LatentRGB.for_family("sd").factors[0] == (0.3512, 0.2297, 0.3227)
    assert LatentRGB.for_family("sdxl").bias == (0.1084, -0.0175, -0.0011)
    assert LatentRGB.for_family("sd3").factors[-1] == (-0.1448, -0.1463, -0.1189)
    assert LatentRGB.for_family("flux").bias == (-0.0329, -0.0718, -0.0851)
    assert {b.taesd for b in map(wrap_pipeline, map(family_pipe, ("sdxl", "sd3", "flux-dev")))} == {
        "madebyollin/taesdxl",
        "madebyollin/taesd3",
        "madebyollin/taef1",
    }


def test_a_family_without_a_latent_rgb_map_is_told_what_to_pass():
    from promptloop_env.previews import LatentRGBPreview

    backbone = wrap_pipeline(family_pipe("sdxl"))
    backbone.latent_rgb = None  # as a plugin family with no community map and none given
    with pytest.raises(ValueError, match="preview='latent_rgb' needs a latent-to-RGB map.*'sdxl' family has none"):
        LatentRGBPreview(backbone, 16)
    given = wrap_pipeline(family_pipe("sdxl"), latent_rgb={"factors": [[1.0, 0.0, 0.0]] * 4})
    assert given.latent_rgb.factors[0] == (1.0, 0.0, 0.0) and given.latent_rgb.bias == (0.0, 0.0, 0.0)


def test_a_pipeline_subclass_is_run_by_its_parents_family_and_others_are_refused():
    pipe = family_pipe("sdxl")
    subclass = type("MyPipeline", (type(pipe),), {})
    assert family_of(object.__new__(subclass)) is families()["sdxl"]
    with pytest.raises(TypeError, match="Unsupported pipeline class str; supported: .*FluxPipeline"):
        family_of("not a pipeline")


def test_flux_to_spatial_inverts_packing():
    backbone = wrap_pipeline(family_pipe("flux-dev"))
    spatial = torch.randn(2, 16, TINY_FLUX_SAMPLE_SIZE, TINY_FLUX_SAMPLE_SIZE)
    packed = backbone.pipe._pack_latents(spatial, 2, 16, TINY_FLUX_SAMPLE_SIZE, TINY_FLUX_SAMPLE_SIZE)
    assert torch.equal(backbone.to_spatial(packed), spatial)


@pytest.mark.parametrize("case", ["sdxl", "sd3", "sd3-no-t5", "flux-dev"])
def test_local_folder_round_trip(case, tmp_path):
    """Save the tiny pipeline (safetensors) and load it back by path, as users do (an SD3 folder without T5 too)."""
    pipe = family_pipe(case)
    folder = tmp_path / case
    pipe.save_pretrained(folder, safe_serialization=True)
    backbone = load_backbone(str(folder), local_files_only=True)
    assert type(backbone) is type(wrap_pipeline(pipe))
    if case == "sd3-no-t5":
        assert backbone.pipe.text_encoder_3 is None and backbone.pipe.tokenizer_3 is None
    if case.startswith("flux"):  # FluxPipeline hard-codes its default size; the tiny one sets it per instance
        backbone.pipe.default_sample_size = TINY_FLUX_SAMPLE_SIZE
    env = make_family_env(backbone, guidance_scale=guidance(case))
    _, _, info = run_episode(env, "a photo of a dog", seed=2)
    loaded = pipeline_image(backbone.pipe, "a photo of a dog", info["noise_seed"], 4, guidance_scale=guidance(case))
    np.testing.assert_array_equal(info["final_image"], loaded)
    # Same weights as the in-memory pipeline; transformers may pick other attention kernels for loaded encoders.
    original = pipeline_image(pipe, "a photo of a dog", info["noise_seed"], 4, guidance_scale=guidance(case))
    assert np.abs(original.astype(int) - loaded.astype(int)).max() <= 1


@pytest.mark.parametrize("case", ["sdxl", "sd3", "sd3-no-t5", "flux-dev"])
def test_truncation_is_reported(case):
    env = make_family_env(family_pipe(case), guidance_scale=guidance(case))
    env.reset(seed=0, options={"query": "a cat"})
    _, _, _, _, info = env.step("a cat")
    assert info["prompt_truncated"] is False
    _, _, _, _, info = env.step(" ".join(["red circle"] * 60))
    assert info["prompt_truncated"] is True


def test_t5_window_counts_for_flux():
    backbone = wrap_pipeline(family_pipe("flux-dev"), max_sequence_length=8)
    assert backbone.is_truncated("a red circle on the left of a big blue square")
    assert not backbone.is_truncated("a red circle")


def test_registry_names_and_families():
    hub = {
        "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
        "sdxl-turbo": "stabilityai/sdxl-turbo",
        "sd35-medium": "stabilityai/stable-diffusion-3.5-medium",
        "sd35-large": "stabilityai/stable-diffusion-3.5-large",
        "flux-dev": "black-forest-labs/FLUX.1-dev",
        "flux-schnell": "black-forest-labs/FLUX.1-schnell",
    }
    for name, repo_id in hub.items():
        assert isinstance(BACKBONES[name], HubModel) and BACKBONES[name].repo_id == repo_id
    assert isinstance(BACKBONES["toy-shapes"], PackageFolder) and BACKBONES["toy-shapes"].folder.is_dir()
    assert isinstance(BACKBONES["tiny"], PipelineFactory)
    assert BACKBONES["sdxl-turbo"].options["default_guidance_scale"] == 0.0
    assert BACKBONES["flux-schnell"].options["default_guidance_scale"] == 0.0
    # A model that keeps its pipeline's default guidance does not restate it: the family class holds it.
    assert "default_guidance_scale" not in BACKBONES["sdxl"].options
    assert {"sd", "sdxl", "sd3", "flux"} <= set(families())


@pytest.mark.parametrize("name", ["tiny-sdxl", "tiny-sd3", "tiny-flux"])
def test_tiny_registry_names_load(name):
    backbone = load_backbone(name, torch_dtype=torch.float32)
    traj = backbone.start(0, 2)
    backbone.denoise([traj], [backbone.encode("a cat")[0]], [2])
    assert to_uint8(backbone.decode(traj.latents)).shape == (1, 64, 64, 3)


def test_cpu_offload_option_calls_the_pipeline(monkeypatch):
    pipe = family_pipe("sd3")
    calls = []
    monkeypatch.setattr(pipe, "enable_model_cpu_offload", lambda *a, **k: calls.append((a, k)), raising=False)
    wrap_pipeline(pipe, cpu_offload=True)
    assert calls == [((), {})]


def test_env_forwards_cpu_offload_where_an_accelerator_is_available(monkeypatch):
    pipe = family_pipe("sd3")
    calls = []
    monkeypatch.setattr(pipe, "enable_model_cpu_offload", lambda *a, **k: calls.append((a, k)), raising=False)
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    env = make_family_env(pipe, cpu_offload=True)
    assert calls == [((), {})] and env.unwrapped.backbone.pipe is pipe


def test_env_refuses_cpu_offload_without_an_accelerator(monkeypatch):
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no accelerator"):
        make_family_env(family_pipe("sd3"), cpu_offload=True)
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    with pytest.raises(ValueError, match="device='cpu'"):
        make_family_env(family_pipe("sd3"), cpu_offload=True, device="cpu")

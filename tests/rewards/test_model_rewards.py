"""Every model-based reward, through its real loading path, on tiny random-weight stand-ins (offline)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch
from gymnasium.error import DependencyNotInstalled

from promptloop_env.registry import resolve
from promptloop_env.rewards import REWARDS, MissingWeightsError, make_reward
from promptloop_env.rewards.model_base import ModelReward, resolve_file
from promptloop_env.testing import STANDIN_BUILDERS, sample_images

MODEL_REWARDS = sorted(STANDIN_BUILDERS)
QUERIES = ["a red circle on the left", "a large blue square", "a green cat"]


def build(name: str, standin, **kwargs) -> ModelReward:
    cls = resolve(REWARDS[name])
    return cls(device="cpu", **{**standin(name), **kwargs})


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_scores_a_batch_with_one_finite_float_per_image(name, standin, images):
    reward = build(name, standin)
    scores = reward(images, QUERIES)
    assert isinstance(scores, list) and len(scores) == 3
    assert all(type(s) is float for s in scores)
    assert np.all(np.isfinite(scores))
    assert len(set(scores)) > 1, "different images should not all get the same score"


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_deterministic_across_calls_instances_and_batching(name, standin, images):
    first = build(name, standin)
    scores = first(images, QUERIES)
    assert first(images, QUERIES) == scores
    np.testing.assert_allclose(build(name, standin)(images, QUERIES), scores, rtol=0, atol=0)
    one_by_one = build(name, standin, batch_size=1)(images, QUERIES)
    np.testing.assert_allclose(one_by_one, scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_loads_lazily_and_on_demand(name, standin):
    reward = build(name, standin)
    assert not reward._loaded and not hasattr(reward, "processor") and not hasattr(reward, "vision")
    reward.load()
    assert reward._loaded


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_honours_torch_dtype(name, standin, images):
    reward = build(name, standin, torch_dtype=torch.bfloat16)
    scores = reward(images, QUERIES)
    assert np.all(np.isfinite(scores))
    model = getattr(reward, "model", None) or reward.vision
    assert next(model.parameters()).dtype == torch.bfloat16
    assert str(next(model.parameters()).device) == "cpu"
    reference = build(name, standin)(images, QUERIES)
    np.testing.assert_allclose(scores, reference, rtol=0.1, atol=0.1 * (1 + np.abs(reference).max()))


@pytest.mark.parametrize("name", ["clip-score", "pickscore", "imagereward", "hpsv2"])
def test_text_conditioned_rewards_depend_on_the_query(name, standin):
    reward = build(name, standin)
    image = np.repeat(sample_images(1), 2, axis=0)
    first, second = reward(image, ["a red circle", "the dog on the right"])
    assert first != second


def test_aesthetic_ignores_the_query(standin, images):
    reward = build("aesthetic", standin)
    assert reward(images, QUERIES) == reward(images, ["", "anything", "x"])


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_long_queries_are_truncated_not_rejected(name, standin):
    scores = build(name, standin)(sample_images(2), ["red " * 300, "a"])
    assert np.all(np.isfinite(scores))


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_rejects_bad_inputs_with_clear_errors(name, standin, images):
    reward = build(name, standin)
    with pytest.raises(ValueError, match="uint8 array"):
        reward(images.astype(np.float32), QUERIES)
    with pytest.raises(ValueError, match="uint8 array"):
        reward(images[0], QUERIES[:1])
    with pytest.raises(ValueError, match="3 images but 2 queries"):
        reward(images, QUERIES[:2])


def test_constructor_validates_arguments():
    cls = resolve(REWARDS["clip-score"])
    with pytest.raises(ValueError, match="batch_size"):
        cls(batch_size=0)
    with pytest.raises(TypeError, match="torch_dtype"):
        cls(torch_dtype="float16")


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_missing_transformers_names_the_extra(name, standin, images, monkeypatch):
    hub_default = resolve(REWARDS[name])(device="cpu")
    local = resolve(REWARDS[name])(device="cpu", **standin(name))
    monkeypatch.setitem(sys.modules, "transformers", None)
    for reward in (hub_default, local):
        with pytest.raises(DependencyNotInstalled, match=r'transformers.*pip install "promptloop\[rewards\]"'):
            reward(images, QUERIES)


def test_missing_huggingface_hub_names_the_extra(images, monkeypatch):
    reward = resolve(REWARDS["imagereward"])(device="cpu")  # its checkpoint is a hub file, not a transformers repo
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(DependencyNotInstalled, match=r'huggingface_hub.*pip install "promptloop\[rewards\]"'):
        reward(images, QUERIES)


def test_hub_file_lookup_needs_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(DependencyNotInstalled, match=r"huggingface_hub.*promptloop\[rewards\]"):
        resolve_file("THUDM/ImageReward", "ImageReward.pt", local_files_only=True)


def _default_weights_cached(name: str) -> bool:
    import huggingface_hub

    reward = resolve(REWARDS[name])(device="cpu")
    filename = getattr(reward, "filename", "config.json")
    return isinstance(huggingface_hub.try_to_load_from_cache(reward.pretrained, filename), str)


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_registry_names_find_their_weights_at_construction_with_one_clear_error(name, monkeypatch):
    if _default_weights_cached(name):
        pytest.skip("the real weights are in this machine's hub cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        make_reward(name, device="cpu")
    assert time.perf_counter() - start < 10, "no hub retries when offline"
    reward = resolve(REWARDS[name])(device="cpu")
    message = str(info.value)
    for source in reward.sources().values():
        assert repr(source) in message
    assert (
        "HF_HUB_OFFLINE" in message and "hf download" in message and f"{type(reward).__name__}(pretrained=" in message
    )


def test_an_unreachable_hub_fails_fast_without_retries(monkeypatch):
    from huggingface_hub import constants

    if _default_weights_cached("imagereward"):
        pytest.skip("the real weights are in this machine's hub cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError, match=r"(?s)127\.0\.0\.1:9 cannot be reached.*'THUDM/ImageReward'"):
        make_reward("imagereward", device="cpu")
    assert time.perf_counter() - start < 10


def test_gym_make_fails_before_any_denoising_when_a_weight_is_missing(monkeypatch):
    import gymnasium as gym

    import promptloop_env  # noqa: F401
    from promptloop_env.testing import tiny_pipe

    if _default_weights_cached("imagereward"):
        pytest.skip("the real weights are in this machine's hub cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="'THUDM/ImageReward'.*'google-bert/bert-base-uncased'"):
        gym.make("PromptLoop-v0", backbone=tiny_pipe(), reward="imagereward")


def test_a_local_folder_without_the_checkpoint_names_the_folder(standin, tmp_path):
    kwargs = {**standin("hpsv2"), "pretrained": str(tmp_path)}
    with pytest.raises(MissingWeightsError, match=r"HPS_v2\.1_compressed\.pt.*not found in the local folder"):
        make_reward({build("hpsv2", standin, **kwargs): 1.0})


def test_instances_load_when_the_reward_is_made(standin):
    reward = build("clip-score", standin)
    assert not reward._loaded
    make_reward({reward: 1.0})
    assert reward._loaded


def test_missing_dependency_fails_when_the_reward_is_made(standin, monkeypatch):
    reward = build("clip-score", standin)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(DependencyNotInstalled, match=r"promptloop\[rewards\]"):
        make_reward({reward: 1.0})


def test_factories_ignore_keywords_they_do_not_use():
    for name in REWARDS:
        assert callable(resolve(REWARDS[name])(device="cpu", torch_dtype=None, seed=3, something_new="x"))


def test_stand_in_rewards_combine_in_a_weighted_sum(standin, images):
    clip, aesthetic = build("clip-score", standin), build("aesthetic", standin)
    combined = make_reward({clip: 0.5, aesthetic: 2.0})
    parts = combined.components(images, QUERIES)
    expected = 0.5 * np.asarray(clip(images, QUERIES)) + 2.0 * np.asarray(aesthetic(images, QUERIES))
    np.testing.assert_allclose(combined.combine(parts), expected, rtol=1e-6)
    assert set(parts) == {"ClipScore", "LaionAesthetic"}

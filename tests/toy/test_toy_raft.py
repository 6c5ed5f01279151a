"""Reward-filtered fine-tuning (RAFT): sample, score, keep, save a dataset, and train on it with ``--data``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from promptloop_env.toy import raft
from promptloop_env.toy.compose import ComposeScene, Thing, render

COMPOSE = Path(__file__).resolve().parents[2] / "promptloop_env/toy/assets/toy-compose"


def test_build_keeps_what_passes_and_saves_a_dataset(tmp_path):
    torch.set_num_threads(1)
    queries = ["a red circle", "two squares", "a blue triangle, black background"]
    meta = raft.build(
        "toy-compose", "toy-compose-soft", queries, samples_per_query=2, out=tmp_path / "data",
        keep_min=0.5, num_inference_steps=4,
    )  # fmt: skip
    assert meta["drawn"] == 6 and len(meta["rewards"]) == 6
    assert meta["kept"] == sum(r >= 0.5 for r in meta["rewards"])
    images, captions = raft.load_dataset(tmp_path / "data")
    assert images.dtype == np.uint8 and images.shape == (meta["kept"], 64, 64, 3)
    assert set(captions) <= set(queries)
    assert json.loads((tmp_path / "data" / raft.META).read_text())["reward"] == "toy-compose-soft"
    # Each sample has its own generator, so a sample does not depend on its batch (up to a grey level of
    # batched arithmetic): query i, draw j has noise seed seed0 + 1000 j + i.
    pipe = raft.load_pipeline("toy-compose")
    alone = raft.sample(pipe, queries[:1], [meta["seed0"]], lambda im, q: [0.0] * len(q), num_inference_steps=4)
    batched = raft.sample(pipe, queries, [meta["seed0"] + i for i in range(3)], lambda im, q: [0.0] * 3, 4)
    np.testing.assert_allclose(alone.images[0], batched.images[0], atol=2)


def test_select_top_fraction_and_cap():
    s = raft.Samples(np.zeros((5, 2, 2, 3), np.uint8), ["a", "a", "a", "b", "b"], list(range(5)),
                     np.array([0.9, 0.8, 0.7, 0.1, 0.2]))  # fmt: skip
    assert raft.select(s, keep_top=0.4).tolist() == [0, 1]
    assert raft.select(s, keep_top=0.6, max_per_query=1).tolist() == [0]  # the top three are all "a"
    assert raft.select(s, max_per_query=1).tolist() == [0, 4]


def test_train_on_a_dataset_folder(tmp_path):
    """--data: the datasets' images and captions replace the world's; two steps move the UNet."""
    from safetensors.torch import load_file

    from promptloop_env.toy.train import main

    torch.set_num_threads(1)
    scene = ComposeScene((Thing("circle", "red", 20, 20, 7), Thing("square", "blue", 44, 44, 6)), "gray")
    raft.save_dataset(tmp_path / "data", np.stack([render(scene)] * 3), ["a red circle and a blue square"] * 3, {})
    raft.save_dataset(tmp_path / "more", render(scene)[None], ["a red circle and a blue square"], {})
    out = tmp_path / "tuned"
    data = f"{tmp_path / 'data'},{tmp_path / 'more'}"
    common = ["--init-from", str(COMPOSE), "--data", data, "--batch-size", "2", "--lr", "1e-3",
              "--warmup-steps", "1", "--ema-decay", "0", "--eval-queries", "0", "--device", "cpu"]  # fmt: skip
    main(["--out", str(out), "--unet-max-steps", "2", *common])
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert log[0]["images"] == 4 and log[0]["captions"] == 4  # both folders
    before = load_file(COMPOSE / "unet/diffusion_pytorch_model.safetensors")
    after = load_file(out / "unet/diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(after[k], v) for k, v in before.items())
    with pytest.raises(ValueError, match="--init-from"):
        main(["--out", str(tmp_path / "bad"), "--data", str(tmp_path / "data"), "--eval-queries", "0"])
    with pytest.raises(FileNotFoundError, match="not a dataset folder"):
        main(["--out", str(tmp_path / "bad"), *common[:2], "--data", str(tmp_path), *common[4:]])

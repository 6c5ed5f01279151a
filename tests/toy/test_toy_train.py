"""A tiny-budget run of the training script: it trains, saves a loadable pipeline and evaluates it."""

import json

import numpy as np
import torch


def test_train_smoke(tmp_path):
    from diffusers import StableDiffusionPipeline

    from promptloop_env.toy.train import main

    torch.set_num_threads(1)
    out = tmp_path / "toy"
    result = main(
        ["--out", str(out), "--vae-minutes", "0.05", "--unet-minutes", "0.05", "--vae-max-steps", "3",
         "--unet-max-steps", "3", "--max-images", "64", "--vae-batch-size", "4", "--batch-size", "4",
         "--captions-per-combo", "2", "--eval-queries", "2", "--eval-guidance", "3", "--eval-steps", "2",
         "--device", "cpu"]
    )  # fmt: skip
    assert result["eval"][0]["n"] == 2
    for name in ["model_index.json", "training_config.json", "training_log.jsonl", "latent_rgb.json", "eval.json",
                 "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"]:  # fmt: skip
        assert (out / name).exists(), name
    assert not (out / "checkpoint").exists()
    latent_rgb = json.loads((out / "latent_rgb.json").read_text())
    assert np.asarray(latent_rgb["factors"]).shape == (4, 3) and len(latent_rgb["bias"]) == 3
    pipe = StableDiffusionPipeline.from_pretrained(out)
    assert pipe.safety_checker is None and pipe.vae.config.scaling_factor != 0.18215
    image = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert image.images.shape == (1, 64, 64, 3)

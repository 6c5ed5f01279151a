"""A tiny-budget run of the training script: it trains, saves a loadable pipeline and evaluates it."""

import json
from pathlib import Path

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


def test_fine_tune_from_a_saved_pipeline(tmp_path):
    """--init-from keeps the tokenizer, text encoder, VAE and its scale; zero steps give back the same UNet."""
    import pytest
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from promptloop_env.toy.train import main

    torch.set_num_threads(1)
    source = Path(__file__).resolve().parents[2] / "promptloop_env/toy/assets/toy-shapes"
    out = tmp_path / "ft"
    common = ["--max-images", "32", "--batch-size", "4", "--captions-per-combo", "2", "--eval-queries", "2",
              "--eval-guidance", "1", "--eval-steps", "2", "--device", "cpu"]  # fmt: skip
    main(["--out", str(out), "--init-from", str(source), "--unet-max-steps", "0", *common])
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        before, after = load_file(source / part), load_file(out / part)
        assert after.keys() <= before.keys()
        for key in after:
            torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=f"{part}: {key}")
    original, tuned = StableDiffusionPipeline.from_pretrained(source), StableDiffusionPipeline.from_pretrained(out)
    assert tuned.vae.config.scaling_factor == original.vae.config.scaling_factor
    assert tuned.tokenizer.get_vocab() == original.tokenizer.get_vocab()
    assert tuned.unet.config.attention_head_dim == [1, 2, 2]  # this version's architecture, the old weights

    # Two real steps with the plain v-loss change the UNet.
    main(["--out", str(tmp_path / "ft2"), "--init-from", str(source), "--unet-max-steps", "2", "--lr", "1e-3",
          "--warmup-steps", "1", "--ema-decay", "0", *common])  # fmt: skip
    moved = load_file(tmp_path / "ft2/unet/diffusion_pytorch_model.safetensors")
    assert any(
        not torch.equal(moved[k], v) for k, v in load_file(source / "unet/diffusion_pytorch_model.safetensors").items()
    )

    with pytest.raises(FileNotFoundError, match="not a pipeline folder"):
        main(["--out", str(tmp_path / "bad"), "--init-from", str(tmp_path), *common])
    with pytest.raises(ValueError, match="loss_weighting"):
        main(["--out", str(tmp_path / "bad2"), "--init-from", str(source), "--loss-weighting", "eps", *common])

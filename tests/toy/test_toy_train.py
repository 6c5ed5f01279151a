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

    from promptloop_env.toy.train import align_levels, main

    torch.set_num_threads(1)
    source = Path(__file__).resolve().parents[2] / "promptloop_env/toy/assets/toy-shapes"
    saved_levels = len(json.loads((source / "unet/config.json").read_text())["block_out_channels"])
    out = tmp_path / "ft"
    common = ["--max-images", "32", "--batch-size", "4", "--captions-per-combo", "2", "--eval-queries", "2",
              "--eval-guidance", "1", "--eval-steps", "2", "--device", "cpu"]  # fmt: skip
    main(["--out", str(out), "--init-from", str(source), "--unet-max-steps", "0", *common])
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        before, after = load_file(source / part), load_file(out / part)
        if part.startswith("unet"):
            tuned_levels = len(json.loads((out / "unet/config.json").read_text())["block_out_channels"])
            before = align_levels(before, saved_levels, tuned_levels)
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


def test_align_levels_drops_the_lowest_level():
    """A 3-level UNet's weights load into a 2-level one: down blocks by index, up blocks from the top."""
    import pytest
    from diffusers import UNet2DConditionModel

    from promptloop_env.toy.train import align_levels

    common = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, cross_attention_dim=16,
                  norm_num_groups=8, attention_head_dim=1)  # fmt: skip
    three = UNet2DConditionModel(
        block_out_channels=(8, 16, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), **common,
    )  # fmt: skip
    two = UNet2DConditionModel(
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), mid_block_type=None, **common,
    )  # fmt: skip
    missing, unexpected = two.load_state_dict(align_levels(three.state_dict(), 3, 2), strict=False)
    assert missing == []
    assert any(k.startswith("mid_block.") for k in unexpected)
    assert any(k.startswith("down_blocks.2.") for k in unexpected)
    for new, old in ((two.up_blocks[0], three.up_blocks[1]), (two.up_blocks[1], three.up_blocks[2])):
        for (name, a), (_, b) in zip(new.state_dict().items(), old.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
    assert torch.equal(two.down_blocks[1].resnets[0].conv1.weight, three.down_blocks[1].resnets[0].conv1.weight)
    with pytest.raises(ValueError, match="cannot add resolution levels"):
        align_levels(two.state_dict(), 2, 3)


def test_compose_world_fine_tune_resumes_after_a_kill(tmp_path, monkeypatch):
    """--world compose: new words get embeddings; a run killed after a checkpoint resumes from its step."""
    import pytest
    from transformers import CLIPTextModel

    from promptloop_env.toy import train
    from promptloop_env.toy.tokenizer import COMPOSE_WORDS, build_compose_tokenizer

    torch.set_num_threads(1)
    source = Path(__file__).resolve().parents[2] / "promptloop_env/toy/assets/toy-shapes"
    out = tmp_path / "compose"
    args = ["--out", str(out), "--world", "compose", "--num-scenes", "16", "--init-from", str(source),
            "--batch-size", "2", "--captions-per-combo", "2", "--eval-queries", "0", "--checkpoint-minutes", "1e-9",
            "--device", "cpu"]  # fmt: skip

    original = train.train_unet

    def killed(*a, **k):
        original(*a, **k)
        raise KeyboardInterrupt  # the run dies after its last checkpoint, before the final save

    with monkeypatch.context() as m:
        m.setattr(train, "train_unet", killed)
        with pytest.raises(KeyboardInterrupt):
            train.main([*args, "--unet-max-steps", "2"])
    assert (out / "checkpoint" / train.TRAINER_STATE).is_file() and not (out / "model_index.json").exists()
    train.main([*args, "--unet-max-steps", "4", "--resume"])
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    resumed = [row for row in log if "resumed_from" in row]
    assert len(resumed) == 1 and resumed[0]["step"] == 2
    assert [row["step"] for row in log if row.get("done") and row["phase"] == "unet"] == [2, 4]
    tokenizer = build_compose_tokenizer()
    assert all(len(tokenizer.tokenize(w)) == 1 for w in COMPOSE_WORDS)
    encoder = CLIPTextModel.from_pretrained(out / "text_encoder")
    assert encoder.get_input_embeddings().weight.shape[0] == len(tokenizer)

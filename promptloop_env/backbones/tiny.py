"""Tiny same-architecture stand-ins built in-process from configs, for tests, examples and benchmarks.

Random weights, a CLIP tokenizer trained locally on a small word list, no files from anywhere.
``tiny_stable_diffusion_pipeline()`` is what ``backbone="tiny"`` loads.
"""

from __future__ import annotations

from typing import Any

import torch

from promptloop_env.text import build_clip_tokenizer

TINY_WORDS = (
    "a an the of on in at with and photo picture painting drawing large small big tiny bright dark red green "
    "blue yellow purple orange white black gray circle square triangle shape left right top bottom center "
    "background cat dog house tree sky sunset portrait detailed high quality"
).split()

SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++-sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
}
"""Scheduler names accepted by :func:`make_scheduler`: name -> (diffusers class, config overrides)."""

SD_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
}

SIZES: dict[str, dict[str, Any]] = {
    # UNet (32, 64) at 8x8 latents -> 64x64 images: a few ms per step.
    "tiny": {"blocks": (32, 64), "layers": 1, "xattn": 32, "text_hidden": 32, "text_layers": 2, "vae": (32, 32, 64, 64), "sample": 8},
    # The mid-size model of the benchmarks: UNet (64, 128, 256) at 32x32 latents -> 256x256 images.
    "mid": {"blocks": (64, 128, 256), "layers": 2, "xattn": 128, "text_hidden": 128, "text_layers": 4, "vae": (32, 64, 128, 128), "sample": 32},
}


def make_scheduler(name: str, config: dict[str, Any] | None = None, **overrides: Any) -> Any:
    """A diffusers scheduler by short name (see :data:`SCHEDULERS`), built from ``config``."""
    import diffusers

    from promptloop_env.registry import lookup

    class_name, defaults = lookup(SCHEDULERS, name, "scheduler")
    cls = getattr(diffusers, class_name)
    return cls.from_config({**(config or SD_SCHEDULER_CONFIG), **defaults, **overrides})


def tiny_stable_diffusion_pipeline(
    size: str = "tiny",
    scheduler: str = "ddim",
    prediction_type: str = "epsilon",
    seed: int = 0,
    model_max_length: int = 77,
):
    """A randomly initialised ``StableDiffusionPipeline`` of the given size, built on CPU from configs.

    Args:
        size: ``"tiny"`` (64x64 images) or ``"mid"`` (256x256, UNet block_out_channels (64, 128, 256)).
        scheduler: a name from :data:`SCHEDULERS`.
        prediction_type: ``"epsilon"`` or ``"v_prediction"``.
        seed: seed of the weight initialisation (the global RNG is saved and restored).
        model_max_length: the tokenizer's (and text encoder's) window.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from promptloop_env.registry import lookup

    cfg = lookup(SIZES, size, "tiny pipeline size")
    tokenizer = build_clip_tokenizer(TINY_WORDS, model_max_length=model_max_length)
    n_blocks = len(cfg["blocks"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=cfg["sample"],
            block_out_channels=cfg["blocks"],
            layers_per_block=cfg["layers"],
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n_blocks - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (n_blocks - 1) + ("UpBlock2D",),
            cross_attention_dim=cfg["xattn"],
            attention_head_dim=8,
            norm_num_groups=8,
            in_channels=4,
            out_channels=4,
        )
        vae = AutoencoderKL(
            block_out_channels=cfg["vae"],
            down_block_types=("DownEncoderBlock2D",) * len(cfg["vae"]),
            up_block_types=("UpDecoderBlock2D",) * len(cfg["vae"]),
            latent_channels=4,
            norm_num_groups=8,
            sample_size=cfg["sample"] * 2 ** (len(cfg["vae"]) - 1),
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=cfg["text_hidden"],
                intermediate_size=cfg["text_hidden"] * 2,
                num_hidden_layers=cfg["text_layers"],
                num_attention_heads=4,
                max_position_embeddings=model_max_length,
                projection_dim=cfg["xattn"],
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        if cfg["text_hidden"] != cfg["xattn"]:
            raise ValueError("text hidden size must equal the UNet cross-attention dim")
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=make_scheduler(scheduler, prediction_type=prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe

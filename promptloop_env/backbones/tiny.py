"""Tiny same-architecture stand-ins built in-process from configs, for tests, examples and benchmarks.

Random weights, a CLIP tokenizer trained locally on a small word list, no files from anywhere.
``tiny_stable_diffusion_pipeline()`` is what ``backbone="tiny"`` loads.
"""

from __future__ import annotations

from typing import Any

import torch

from promptloop_env.text import build_clip_tokenizer

TINY_WORDS = (
    "a an the of on in at with and photo picture painting drawing large small big tiny bright dark red green blue "
    "yellow purple orange white black gray circle square triangle shape left right top bottom center background cat "
    "dog house tree sky sunset portrait detailed high quality"
).split()
"""The tiny pipelines' vocabulary: each word is one token of their tokenizers."""

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
    "tiny": {
        "blocks": (32, 64),
        "layers": 1,
        "xattn": 32,
        "text_hidden": 32,
        "text_layers": 2,
        "vae": (32, 32, 64, 64),
        "sample": 8,
    },
    # The mid-size model of the benchmarks: UNet (64, 128, 256) at 32x32 latents -> 256x256 images.
    "mid": {
        "blocks": (64, 128, 256),
        "layers": 2,
        "xattn": 128,
        "text_hidden": 128,
        "text_layers": 4,
        "vae": (32, 64, 128, 128),
        "sample": 32,
    },
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
    return _assemble(
        StableDiffusionPipeline,
        {"vae": vae.eval(), "text_encoder": text_encoder.eval(), "unet": unet.eval()},
        tokenizer=tokenizer,
        scheduler=make_scheduler(scheduler, prediction_type=prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# -- tiny stand-ins of the other families (SDXL, SD3, FLUX) --------------------------------------------------------
# Sizes follow diffusers' own ``get_dummy_components`` in spirit, but with the real latent channel counts (16 for
# SD3 and FLUX) so the community ``latent_rgb`` maps and the tiny autoencoders apply unchanged.


def build_t5_tokenizer(words: list[str] | tuple[str, ...], model_max_length: int = 512):
    """A T5-style Unigram tokenizer built in-process: each word one piece, any other text falls back to letters.

    >>> tok = build_t5_tokenizer(["red", "circle"])
    >>> tok.convert_ids_to_tokens(tok("red circle").input_ids)
    ['▁red', '▁circle', '</s>']
    """
    from transformers import T5Tokenizer

    # T5's layout: <pad>=0, </s>=1, <unk>=2, then the pieces (log-probability scores: whole words beat letters).
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -1.0) for w in sorted({w.lower() for w in words})]
    alphabet = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()"))
    pieces += [(c, -8.0) for c in alphabet] + [("\u2581" + c, -8.0) for c in alphabet]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def _clip_text_encoder(tokenizer: Any, hidden: int, projection_dim: int, with_projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=projection_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config).eval()


def _t5_encoder(tokenizer: Any, d_model: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=d_model * 2,
        num_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def _assemble(pipeline_class: type, models: dict[str, Any], **parts: Any) -> Any:
    """``pipeline_class(**models, **parts)`` with its denoising progress bar off (the env runs its own loop)."""
    pipe = pipeline_class(**models, **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _kl_vae(blocks: tuple[int, ...], latent_channels: int, sample_size: int, **config: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=blocks,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=sample_size,
        **config,
    ).eval()


def tiny_stable_diffusion_xl_pipeline(scheduler: str = "euler", timestep_spacing: str = "leading", seed: int = 0):
    """A randomly initialised ``StableDiffusionXLPipeline`` (64x64 images), built on CPU from configs.

    Two CLIP text encoders (the second with a projection, whose pooled output feeds the added conditioning),
    a UNet with ``addition_embed_type="text_time"``. ``scheduler="euler-ancestral", timestep_spacing="trailing"``
    is the sdxl-turbo setting.
    """
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer = build_clip_tokenizer(TINY_WORDS)
    tokenizer_2 = build_clip_tokenizer(TINY_WORDS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        models = dict(
            unet=UNet2DConditionModel(
                sample_size=8,
                block_out_channels=(32, 64),
                layers_per_block=1,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                attention_head_dim=(2, 4),
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=8,
                transformer_layers_per_block=(1, 1),
                projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids x 8 + pooled projection dim
                cross_attention_dim=64,  # both encoders' hidden states side by side: 32 + 32
                norm_num_groups=8,
            ).eval(),
            vae=_kl_vae((32, 32, 64, 64), 4, 64, scaling_factor=0.13025),
            text_encoder=_clip_text_encoder(tokenizer, 32, 32, with_projection=False),
            text_encoder_2=_clip_text_encoder(tokenizer_2, 32, 32, with_projection=True),
        )
    return _assemble(
        StableDiffusionXLPipeline,
        models,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=make_scheduler(scheduler, timestep_spacing=timestep_spacing),
        add_watermarker=False,
    )


def _flow_scheduler(**config: Any) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, **config)


def _flow_vae(blocks: tuple[int, ...], scaling_factor: float, shift_factor: float) -> Any:
    """The SD3 / FLUX autoencoder layout: 16 latent channels, no quant convs, latents shifted then scaled."""
    return _kl_vae(
        blocks,
        16,
        64,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def tiny_stable_diffusion_3_pipeline(with_t5: bool = True, seed: int = 0):
    """A randomly initialised ``StableDiffusion3Pipeline`` (64x64 images, 16 latent channels), built from configs.

    Args:
        with_t5: include the T5 encoder; without it the pipeline uses zeros in its place, as diffusers does.
        seed: seed of the weight initialisation (the global RNG is saved and restored).
    """
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer = build_clip_tokenizer(TINY_WORDS)
    tokenizer_2 = build_clip_tokenizer(TINY_WORDS)
    tokenizer_3 = build_t5_tokenizer(TINY_WORDS, model_max_length=256) if with_t5 else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        models = dict(
            transformer=SD3Transformer2DModel(
                sample_size=8,
                patch_size=2,
                in_channels=16,
                out_channels=16,
                num_layers=2,
                attention_head_dim=8,
                num_attention_heads=4,
                joint_attention_dim=64,  # T5's width; the two CLIPs (32 + 32) are padded to it
                caption_projection_dim=32,
                pooled_projection_dim=64,  # both CLIP projections side by side
                pos_embed_max_size=16,
            ).eval(),
            vae=_flow_vae((32, 32, 64, 64), scaling_factor=1.5305, shift_factor=0.0609),
            text_encoder=_clip_text_encoder(tokenizer, 32, 32, with_projection=True),
            text_encoder_2=_clip_text_encoder(tokenizer_2, 32, 32, with_projection=True),
            text_encoder_3=_t5_encoder(tokenizer_3, 64) if with_t5 else None,
        )
    return _assemble(
        StableDiffusion3Pipeline,
        models,
        scheduler=_flow_scheduler(),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        tokenizer_3=tokenizer_3,
    )


TINY_FLUX_SAMPLE_SIZE = 16
"""Latent side of the tiny FLUX pipeline. ``FluxPipeline`` hard-codes 128 (4096 image tokens, ~0.35 s a step on
one CPU thread), so the builder sets ``pipe.default_sample_size`` on the instance; a pipeline reloaded from disk
gets 128 back unless you set it again."""


def tiny_flux_pipeline(guidance_embeds: bool = True, seed: int = 0):
    """A randomly initialised ``FluxPipeline`` (64x64 images, 16 latent channels packed 2x2), built from configs.

    Args:
        guidance_embeds: FLUX.1-dev style guidance embedding (True) or FLUX.1-schnell style (False).
        seed: seed of the weight initialisation (the global RNG is saved and restored).
    """
    from diffusers import FluxPipeline, FluxTransformer2DModel

    tokenizer = build_clip_tokenizer(TINY_WORDS)
    tokenizer_2 = build_t5_tokenizer(TINY_WORDS, model_max_length=512)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        models = dict(
            transformer=FluxTransformer2DModel(
                patch_size=1,
                in_channels=64,  # 16 latent channels x 2x2 packing
                num_layers=1,
                num_single_layers=1,
                attention_head_dim=16,
                num_attention_heads=2,
                joint_attention_dim=64,  # T5's width
                pooled_projection_dim=32,  # CLIP's pooled output
                guidance_embeds=guidance_embeds,
                axes_dims_rope=(4, 4, 8),
            ).eval(),
            vae=_flow_vae((32, 32, 64), scaling_factor=0.3611, shift_factor=0.1159),
            text_encoder=_clip_text_encoder(tokenizer, 32, 32, with_projection=False),
            text_encoder_2=_t5_encoder(tokenizer_2, 64),
        )
    scheduler = _flow_scheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
    )
    pipe = _assemble(FluxPipeline, models, scheduler=scheduler, tokenizer=tokenizer, tokenizer_2=tokenizer_2)
    pipe.default_sample_size = TINY_FLUX_SAMPLE_SIZE
    return pipe

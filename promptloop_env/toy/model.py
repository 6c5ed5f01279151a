"""The toy pipeline's components, built from config (no download), and the latent -> RGB map.

Sizes are set by what one episode may cost on a 2-core CPU (20 steps with classifier-free guidance well
under 0.5 s) and by what the toy world needs:

- **Text encoder**: ``CLIPTextModel``, hidden 128, 3 layers, 32 positions (the tokenizer's window).
- **UNet**: ``UNet2DConditionModel`` on 16x16x4 latents, channels (32, 64, 64), one resnet per level,
  cross-attention (32-dim heads) at 8x8 and no mid block: at these sizes a call costs its number of modules
  more than its arithmetic, so attention at 16x16 and the mid block were dropped (the measurements and the
  rejected smaller variants are in ``assets/toy-shapes/README.md``). v-prediction: its x0 estimate at high
  noise is a smooth mean image, not an amplified noise guess. Trained with the plain v-loss: Min-SNR weights
  leave the high-noise steps, where objects are placed, almost no weight.
- **VAE**: ``AutoencoderKL`` 64x64x3 -> 16x16x4, channels (16, 32, 64), ``norm_num_groups=1``. With one
  channel per group GroupNorm acts as instance norm and erases flat colours; one group over all channels keeps
  the channel ratios that encode colour.
- **Schedulers**: linear betas 1e-4..0.02 over 1000 steps, whose terminal SNR (4e-5) is low enough that the
  starting noise does not leak the background; sampling with DDIM and ``trailing`` spacing so 20 steps start
  at t=999.
"""

from __future__ import annotations

import torch

SCHEDULE = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
PREDICTION_TYPE = "v_prediction"
TEXT_HIDDEN = 128


def build_text_encoder(tokenizer):
    """A small ``CLIPTextModel`` matching ``tokenizer`` (vocab, window, special tokens)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=4 * TEXT_HIDDEN,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=TEXT_HIDDEN,
    )
    return CLIPTextModel(config)


def build_unet():
    """The denoiser: 16x16x4 latents, cross-attention at 8x8, no mid block (see module doc)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type=None,
        cross_attention_dim=TEXT_HIDDEN,
        # diffusers reads ``attention_head_dim`` on this class as the number of heads per block (a legacy name):
        # (1, 2, 2) gives 32-dimensional heads. 32 here would mean 32 heads of 1-2 dimensions, 1.6x slower on CPU.
        attention_head_dim=(1, 2, 2),
        norm_num_groups=8,
    )


def build_vae():
    """The autoencoder: 64x64x3 <-> 16x16x4, one normalisation group (see module doc)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=1,
        mid_block_add_attention=False,
        sample_size=64,
    )


def build_train_scheduler():
    """The DDPM scheduler whose noise levels the UNet is trained on."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE, prediction_type=PREDICTION_TYPE, clip_sample=False)


SAMPLERS: tuple[str, ...] = ("ddim", "dpm++")


def build_sample_scheduler(sampler: str = "ddim"):
    """The sampling scheduler saved with the pipeline, trailing spacing (step one is at t=999).

    Args:
        sampler: ``"ddim"`` (``toy-shapes``, ``toy-compose``) or ``"dpm++"``: DPM-Solver++ 2M, deterministic, the
            second-order multistep solver most SD pipelines default to (``toy-compose-b``).
    """
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if sampler == "dpm++":
        return DPMSolverMultistepScheduler(
            **SCHEDULE,
            prediction_type=PREDICTION_TYPE,
            algorithm_type="dpmsolver++",
            solver_order=2,
            timestep_spacing="trailing",
            steps_offset=1,
        )
    if sampler != "ddim":
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    # steps_offset=1 only silences the pipeline's legacy-config rewrite; trailing spacing ignores it.
    return DDIMScheduler(
        **SCHEDULE,
        prediction_type=PREDICTION_TYPE,
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=1,
        timestep_spacing="trailing",
    )


def fit_latent_rgb(latents: torch.Tensor, images: torch.Tensor) -> dict:
    """Least-squares linear map from (scaled) latent pixels to the mean RGB of their image blocks.

    Args:
        latents: ``[N, 4, h, w]`` latents in the UNet's space (VAE latents times ``scaling_factor``).
        images: ``[N, 3, H, W]`` the matching images in [-1, 1], ``H / h`` pixels per latent pixel.

    Returns:
        A JSON-ready dict that :meth:`promptloop_env.backbones.base.LatentRGB.from_dict` reads: ``factors`` (4 rows
        of RGB) and ``bias``, with ``rgb = latent @ factors + bias`` per latent pixel, RGB in [-1, 1].
    """
    factor = images.shape[-1] // latents.shape[-1]
    target = torch.nn.functional.avg_pool2d(images.float(), factor)
    x = latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    y = target.permute(0, 2, 3, 1).reshape(-1, 3)
    x1 = torch.cat([x, torch.ones(len(x), 1, device=x.device)], dim=1)
    solution = torch.linalg.lstsq(x1.cpu(), y.cpu()).solution  # [5, 3]
    residual = ((x1.cpu() @ solution - y.cpu()) ** 2).mean().sqrt().item()
    return {
        "factors": solution[:-1].tolist(),
        "bias": solution[-1].tolist(),
        "input": "latents in the UNet's space (VAE latents times vae.config.scaling_factor), [B, 4, h, w]",
        "output": "rgb = einsum('bchw,cr->brhw', latents, factors) + bias, in [-1, 1], one pixel per latent pixel",
        "rmse": residual,
    }

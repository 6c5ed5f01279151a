"""Train the toy-shapes text-to-image model and save it as a diffusers pipeline folder.

From scratch (GPU; the shipped model's first stage took 5 minutes on an H200 with these settings, but with an
earlier architecture and Min-SNR weights, see below; this version's recipe has not been re-run from scratch)::

    python -m promptloop_env.toy.train --out runs/toy-shapes --vae-minutes 1.0 --unet-minutes 3.9 \
        --batch-size 512 --vae-batch-size 256 --eval-queries 200 --eval-guidance 1,3

Fine-tune a saved pipeline (its tokenizer and VAE stay fixed; its text encoder and UNet train on, the UNet
weights loaded into this version's architecture), e.g. on this repository's 2-core CPU, 0.7 steps/s at batch 128::

    python -m promptloop_env.toy.train --out runs/toy-ft --init-from promptloop_env/toy/assets/toy-shapes \
        --unet-minutes 35 --batch-size 128 --lr 4e-4 --warmup-steps 50 --num-threads 2 --eval-guidance 1,3

The compositional world (``--world compose``; the shipped ``toy-compose`` was made so, see its asset README)::

    python -m promptloop_env.toy.train --out runs/toy-compose --world compose --num-scenes 40000 \
        --init-from promptloop_env/toy/assets/toy-shapes --unet-minutes 75 --batch-size 128 --lr 4e-4 \
        --warmup-steps 50 --captions-per-combo 4 --eval-queries 0 --num-threads 1

Reward-filtered fine-tuning (RAFT; ``--data``, a dataset folder of images and their captions made by
:mod:`promptloop_env.toy.raft`, replaces the world's scenes; the repository's experiment model ``toy-compose-tuned``
was made so, by ``research/toy_compose/rebuild_models.py``)::

    python -m promptloop_env.toy.train --out runs/toy-compose-tuned --init-from promptloop_env/toy/assets/toy-compose \
        --data runs/raft-data --unet-minutes 15 --batch-size 128 --lr 1e-4 --warmup-steps 20 --eval-queries 0

A stopped run goes on from ``<out>/checkpoint`` (written atomically every ``--checkpoint-minutes``) with the same
command and ``--resume``.

CPU smoke run (about a minute)::

    python -m promptloop_env.toy.train --out /tmp/toy --vae-minutes 0.2 --unet-minutes 0.3 --max-images 256 \
        --vae-batch-size 8 --batch-size 16 --captions-per-combo 4 --eval-queries 4 --eval-guidance 3

How the shipped model was made is in ``promptloop_env/toy/assets/toy-shapes/README.md``.

Phases: render every distinct image of the world (60,750) into memory on the device; train the VAE (MSE + tiny KL;
skipped when fine-tuning); pre-encode all images to latent means/stds and set ``scaling_factor`` from their std;
fit the ``latent_rgb.json`` preview map; train text encoder + UNet jointly (v-prediction, plain v-loss by default,
10% empty captions for classifier-free guidance, EMA) on latents and on a pre-tokenised bank of captions, so no
step renders or tokenises in Python; save the EMA pipeline (safetensors) and evaluate it with the analyser on the
held-out queries. Each phase stops at its time budget or step cap. The output folder holds the pipeline
(``model_index.json`` and one folder per component), ``training_config.json``, ``training_log.jsonl``,
``latent_rgb.json`` and ``eval.json``; ``checkpoint/`` is the latest periodic checkpoint (same layout).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from promptloop_env.toy import compose
from promptloop_env.toy import model as toy_model
from promptloop_env.toy.analyser import analyse
from promptloop_env.toy.prompts import TOY_TEST_QUERIES
from promptloop_env.toy.rewards import fidelity
from promptloop_env.toy.tokenizer import build_compose_tokenizer, build_tokenizer
from promptloop_env.toy.world import ATTRIBUTES, all_scenes, attribute_combos, caption, parse_query, render


@dataclass
class TrainConfig:
    """Settings of one training run; each field's ``help`` is its command-line help."""

    out: str = field(default="runs/toy-shapes", metadata={"help": "output folder (the pipeline is saved here)"})
    vae_minutes: float = field(default=1.5, metadata={"help": "time budget of the VAE phase"})
    unet_minutes: float = field(default=5.0, metadata={"help": "time budget of the text encoder + UNet phase"})
    vae_max_steps: int = field(default=20000, metadata={"help": "step cap of the VAE phase"})
    unet_max_steps: int = field(default=200000, metadata={"help": "step cap of the UNet phase"})
    vae_batch_size: int = field(default=256, metadata={"help": "VAE batch size"})
    batch_size: int = field(default=256, metadata={"help": "UNet batch size"})
    vae_lr: float = field(default=1e-3, metadata={"help": "VAE peak learning rate"})
    lr: float = field(default=8e-4, metadata={"help": "UNet + text encoder peak learning rate"})
    warmup_steps: int = field(default=200, metadata={"help": "linear warmup steps of each phase"})
    kl_weight: float = field(default=1e-6, metadata={"help": "VAE KL weight (per-sample KL sum)"})
    loss_weighting: str = field(
        default="v",
        metadata={
            "help": "'v': plain v-MSE (x0 weight snr+1, so the high-noise steps where layout is decided count); "
            "'min-snr': min(snr, gamma)/(snr+1), which gives those steps almost no weight"
        },
    )
    min_snr_gamma: float = field(
        default=5.0, metadata={"help": "Min-SNR weighting gamma (with --loss-weighting min-snr)"}
    )
    init_from: str = field(
        default="",
        metadata={
            "help": "a toy pipeline folder to fine-tune: its tokenizer, text encoder, VAE (frozen; the VAE phase is "
            "skipped) and UNet weights, loaded into this version's UNet architecture"
        },
    )
    world: str = field(
        default="shapes",
        metadata={
            "help": "'shapes': toy-shapes (every distinct scene, captions per attribute combo); 'compose': "
            "toy-compose (--num-scenes random scenes of 1-4 objects, --captions-per-combo captions per scene)"
        },
    )
    num_scenes: int = field(default=40000, metadata={"help": "scenes rendered for --world compose"})
    data: str = field(
        default="",
        metadata={
            "help": "dataset folders, comma-separated (images.safetensors + captions.json, see "
            "promptloop_env.toy.raft), to train on instead of the world's scenes, one caption per image (RAFT); the "
            "tokenizer is --init-from's"
        },
    )
    resume: bool = field(
        default=False, metadata={"help": "continue from <out>/checkpoint (weights, optimiser, EMA, step, clock)"}
    )
    cfg_dropout: float = field(default=0.1, metadata={"help": "fraction of captions replaced by '' (for CFG)"})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay of UNet and text encoder weights"})
    captions_per_combo: int = field(default=64, metadata={"help": "pre-tokenised captions per attribute combo"})
    max_images: int = field(default=0, metadata={"help": "train on a random subset of the world (0 = all)"})
    eval_queries: int = field(default=200, metadata={"help": "held-out queries scored at the end"})
    eval_guidance: str = field(default="2,3,5", metadata={"help": "guidance scales evaluated at the end"})
    eval_steps: int = field(default=20, metadata={"help": "sampling steps of the evaluation"})
    checkpoint_minutes: float = field(default=2.0, metadata={"help": "minutes between checkpoints (0 = none)"})
    log_every: int = field(default=50, metadata={"help": "steps between log lines"})
    seed: int = field(default=0, metadata={"help": "seed of everything"})
    device: str = field(default="auto", metadata={"help": "'auto' (cuda if available), 'cuda' or 'cpu'"})
    num_threads: int = field(default=1, metadata={"help": "CPU threads (1: the box is shared; see the spike)"})

    def __post_init__(self) -> None:
        if self.world not in ("shapes", "compose"):
            raise ValueError(f"world must be 'shapes' or 'compose', got {self.world!r}")
        if self.data and not self.init_from:
            raise ValueError("--data fine-tunes a saved pipeline: give --init-from (its tokenizer and VAE are kept)")
        if self.loss_weighting not in ("v", "min-snr"):
            raise ValueError(f"loss_weighting must be 'v' or 'min-snr', got {self.loss_weighting!r}")


class Logger:
    """Appends JSON lines to ``training_log.jsonl`` and echoes them."""

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        if not append:
            path.write_text("")

    def __call__(self, **row) -> None:
        line = json.dumps(row)
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def _lr_factor(step: int, elapsed: float, budget: float, warmup: int, max_steps: int) -> float:
    """Linear warmup, then cosine to 10% over whichever ends first: the time budget or the step cap."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, max(elapsed / max(budget, 1e-9), step / max(max_steps, 1)))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def prepare_data(cfg: TrainConfig, tokenizer, device: torch.device) -> dict:
    """Render the world and pre-tokenise the caption bank; everything stays on ``device``."""
    rng = random.Random(cfg.seed)
    if cfg.data:
        from promptloop_env.toy.raft import load_dataset

        parts = [load_dataset(folder) for folder in cfg.data.split(",")]
        images = torch.from_numpy(np.concatenate([array for array, _ in parts])).to(device)
        texts = [text for _, captions in parts for text in captions]
        scene_combo = torch.arange(len(texts), device=device)  # each image has its one caption
        combos = texts
    elif cfg.world == "compose":
        scenes = [compose.random_scene(rng) for _ in range(cfg.num_scenes)]
        images = torch.from_numpy(np.stack([compose.render(s) for s in scenes])).to(device)
        scene_combo = torch.arange(len(scenes), device=device)  # each scene has its own captions
        texts = [compose.random_caption(s, rng) for s in scenes for _ in range(cfg.captions_per_combo)]
        combos: list = scenes
    else:
        scenes = list(all_scenes())
        if cfg.max_images:
            scenes = rng.sample(scenes, min(cfg.max_images, len(scenes)))
        combos = attribute_combos()
        combo_index = {tuple(c.values()): i for i, c in enumerate(combos)}
        images = torch.from_numpy(np.stack([render(s) for s in scenes])).to(device)  # uint8 [N, 64, 64, 3]
        scene_combo = torch.tensor([combo_index[tuple(s.attributes().values())] for s in scenes], device=device)
        texts = [caption(c, rng) for c in combos for _ in range(cfg.captions_per_combo)]

    def tokenize(batch: list[str]) -> torch.Tensor:
        kwargs = dict(padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
        return tokenizer(batch, return_tensors="pt", **kwargs).input_ids

    bank = tokenize(texts).view(len(combos), len(texts) // len(combos), -1).to(device)
    return dict(images=images, scene_combo=scene_combo, bank=bank, empty=tokenize([""]).to(device), examples=texts[:8])


def to_model_space(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1]."""
    return images_uint8.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(cfg: TrainConfig, vae, data: dict, device: torch.device, autocast, log: Logger) -> None:
    """Reconstruction (MSE) + ``kl_weight`` x KL, until the VAE budget or step cap."""
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.01)
    gen = torch.Generator(device).manual_seed(cfg.seed + 1)
    n, budget, start, step = len(data["images"]), cfg.vae_minutes * 60, time.time(), 0
    vae.train()
    while step < cfg.vae_max_steps and time.time() - start < budget:
        for group in opt.param_groups:
            group["lr"] = cfg.vae_lr * _lr_factor(
                step, time.time() - start, budget, cfg.warmup_steps, cfg.vae_max_steps
            )
        x = to_model_space(data["images"][torch.randint(n, (cfg.vae_batch_size,), device=device, generator=gen)])
        with autocast():
            posterior = vae.encode(x).latent_dist
            recon = vae.decode(posterior.sample(generator=gen)).sample
        mse = torch.nn.functional.mse_loss(recon.float(), x)
        loss = mse + cfg.kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == 1:
            log(phase="vae", step=step, mse=round(mse.item(), 6), seconds=round(time.time() - start, 1))
    log(phase="vae", step=step, mse=round(mse.item(), 6), seconds=round(time.time() - start, 1), done=True)


@torch.no_grad()
def encode_all(vae, images: torch.Tensor, autocast, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image, stored in bfloat16 on the images' device."""
    vae.eval()
    means, stds = [], []
    for i in range(0, len(images), chunk):
        with autocast():
            dist = vae.encode(to_model_space(images[i : i + chunk])).latent_dist
        means.append(dist.mean.to(torch.bfloat16))
        stds.append(dist.std.to(torch.bfloat16))
    return torch.cat(means), torch.cat(stds)


class EMA:
    """Exponential moving average of a list of modules' parameters (warmed-up decay)."""

    def __init__(self, modules: list[torch.nn.Module], decay: float) -> None:
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone().float() for p in self.params]
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1 - decay)

    @torch.no_grad()
    def copy_to(self, modules: list[torch.nn.Module]) -> None:
        for p, s in zip([p for m in modules for p in m.parameters()], self.shadow, strict=True):
            p.copy_(s.to(p.dtype))


def assemble_pipeline(tokenizer, text_encoder, unet, vae):
    """The diffusers ``StableDiffusionPipeline`` of the toy world (no safety checker)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=toy_model.build_sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def align_levels(state: dict, saved_levels: int, new_levels: int) -> dict:
    """A saved UNet's ``state`` renamed for a UNet with ``new_levels`` <= ``saved_levels`` resolution levels.

    Up block ``j`` of the saved UNet becomes up block ``j - (saved_levels - new_levels)``: the up path runs from
    the lowest resolution to the highest, so the blocks the two share are the last ones. Down blocks keep their
    indices. Parameters of the dropped levels keep names the new UNet lacks and so are dropped when loading.
    """
    if new_levels > saved_levels:
        raise ValueError(f"cannot add resolution levels: the saved UNet has {saved_levels}, this one {new_levels}")
    shift = saved_levels - new_levels
    renamed = {}
    for key, value in state.items():
        if key.startswith("up_blocks."):
            index, rest = key[len("up_blocks.") :].split(".", 1)
            key = f"up_blocks.{int(index) - shift}.{rest}" if int(index) >= shift else f"dropped.{key}"
        renamed[key] = value
    return renamed


def transfer_vocabulary(text_encoder, old_tokenizer, new_tokenizer):
    """``text_encoder`` with its token embeddings moved from ``old_tokenizer``'s vocabulary to ``new_tokenizer``'s.

    A token both vocabularies have keeps its row; a new token (a new word) starts as the mean of the rows of the
    pieces the old tokenizer split it into, so the fine-tune starts from what the encoder already read.
    """
    old = text_encoder.get_input_embeddings().weight.detach()
    old_vocab = old_tokenizer.get_vocab()
    rows = []
    for token, _ in sorted(new_tokenizer.get_vocab().items(), key=lambda item: item[1]):
        if token in old_vocab:
            rows.append(old[old_vocab[token]])
        else:
            pieces = old_tokenizer(token.replace("</w>", ""), add_special_tokens=False).input_ids
            rows.append(old[pieces].mean(dim=0))
    text_encoder.resize_token_embeddings(len(rows), mean_resizing=False)
    with torch.no_grad():
        text_encoder.get_input_embeddings().weight.copy_(torch.stack(rows))
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(text_encoder.config, name, getattr(new_tokenizer, name))
    return text_encoder


def load_initial_pipeline(folder: str, tokenizer=None):
    """A saved toy pipeline to fine-tune, its UNet weights loaded into :func:`toy_model.build_unet`'s architecture.

    With ``tokenizer`` (a vocabulary of more words), the text encoder's embeddings move to it
    (:func:`transfer_vocabulary`). Every parameter of the new architecture must be in the saved UNet with the same
    shape; settings that change no shape (the number of attention heads) may differ, and saved modules the new
    architecture lacks (an attention block, the mid block) are dropped. Where the new UNet has fewer resolution
    levels, the saved one's lowest levels are dropped: down blocks keep their indices, up blocks are counted from
    the full-resolution end (see :func:`align_levels`).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizerFast

    path = Path(folder)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"--init-from {folder!r} is not a pipeline folder (no model_index.json)")
    unet = toy_model.build_unet()
    saved = UNet2DConditionModel.from_pretrained(path / "unet", use_safetensors=True)
    try:
        levels = len(saved.config.block_out_channels), len(unet.config.block_out_channels)
        state = align_levels(saved.state_dict(), *levels)
        missing, _dropped = unet.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"--init-from {folder!r}: its UNet's parameter shapes differ from this version's") from err
    if missing:
        raise ValueError(f"--init-from {folder!r}: its UNet lacks {len(missing)} parameters, e.g. {missing[0]!r}")
    saved_tokenizer = CLIPTokenizerFast.from_pretrained(path / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", use_safetensors=True)
    if tokenizer is not None and tokenizer.get_vocab() != saved_tokenizer.get_vocab():
        text_encoder = transfer_vocabulary(text_encoder, saved_tokenizer, tokenizer)
    return assemble_pipeline(
        tokenizer if tokenizer is not None else saved_tokenizer,
        text_encoder,
        unet,
        AutoencoderKL.from_pretrained(path / "vae", use_safetensors=True),
    )


def save_pipeline(pipe, folder: Path, ema: EMA | None = None) -> None:
    """``save_pretrained`` (safetensors) with the EMA weights swapped in, then the training weights restored."""
    modules = [pipe.unet, pipe.text_encoder]
    backup = [p.detach().clone() for m in modules for p in m.parameters()] if ema else []
    if ema:
        ema.copy_to(modules)
    pipe.save_pretrained(folder, safe_serialization=True)
    if ema:
        with torch.no_grad():
            for p, b in zip([p for m in modules for p in m.parameters()], backup, strict=True):
                p.copy_(b)


TRAINER_STATE = "trainer_state.pt"


def save_checkpoint(pipe, folder: Path, ema: EMA, state: dict) -> None:
    """Write ``folder`` atomically: ``train/`` (the training weights), ``ema/`` (the EMA pipeline, ready to sample
    from) and :data:`TRAINER_STATE` (optimiser, EMA, step, generator, clock; tensors only, so it loads with
    ``weights_only=True``). A killed run leaves either the old checkpoint or the new one, never half of one."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp / "train", safe_serialization=True)
    save_pipeline(pipe, tmp / "ema", ema)
    torch.save(state, tmp / TRAINER_STATE)
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def train_unet(cfg, pipe, data, latents, device, autocast, log, out: Path) -> EMA:
    """Text encoder + UNet, v-prediction with Min-SNR weights, on pre-encoded latents and captions."""
    unet, text_encoder = pipe.unet, pipe.text_encoder
    scheduler = toy_model.build_train_scheduler()
    alphas = scheduler.alphas_cumprod.to(device)
    snr = alphas / (1 - alphas)
    if cfg.loss_weighting == "min-snr":
        # v-prediction's loss weight for Min-SNR: min(snr, gamma) / (snr + 1). In x0 terms that is min(snr, gamma),
        # about 4e-5 at t=999: the steps that place the object get no weight and position is left to the noise.
        weights = torch.clamp(snr, max=cfg.min_snr_gamma) / (snr + 1)
    else:  # "v": plain v-MSE; in x0 terms the weight is snr + 1, at least 1 at every noise level
        weights = torch.ones_like(snr)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    ema = EMA([unet, text_encoder], cfg.ema_decay)
    gen = torch.Generator(device).manual_seed(cfg.seed + 2)
    means, stds = latents
    scale = pipe.vae.config.scaling_factor
    n, bank, per_combo = len(means), data["bank"], data["bank"].shape[1]
    budget, start, step, last_ckpt = cfg.unet_minutes * 60, time.time(), 0, time.time()
    state_file = out / "checkpoint" / TRAINER_STATE
    if cfg.resume and state_file.is_file():
        state = torch.load(state_file, map_location=device, weights_only=True)
        opt.load_state_dict(state["optimizer"])
        for shadow, saved in zip(ema.shadow, state["ema"], strict=True):
            shadow.copy_(saved)
        ema.updates, step = int(state["ema_updates"]), int(state["step"])
        gen.set_state(state["generator"].cpu())
        start -= float(state["seconds"])  # the budget and the learning-rate schedule go on from where they were
        log(phase="unet", resumed_from=str(state_file), step=step)
    unet.train()
    text_encoder.train()
    while step < cfg.unet_max_steps and time.time() - start < budget:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * _lr_factor(step, time.time() - start, budget, cfg.warmup_steps, cfg.unet_max_steps)
        b = cfg.batch_size
        idx = torch.randint(n, (b,), device=device, generator=gen)
        eps = torch.randn(means[idx].shape, device=device, generator=gen)
        x0 = (means[idx].float() + stds[idx].float() * eps) * scale
        choice = torch.randint(per_combo, (b,), device=device, generator=gen)
        ids = bank[data["scene_combo"][idx], choice]
        drop = torch.rand(b, device=device, generator=gen) < cfg.cfg_dropout
        ids = torch.where(drop[:, None], data["empty"].expand(b, -1), ids)
        t = torch.randint(scheduler.config.num_train_timesteps, (b,), device=device, generator=gen)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        xt = scheduler.add_noise(x0, noise, t)
        target = scheduler.get_velocity(x0, noise, t)
        with autocast():
            pred = unet(xt, t, text_encoder(ids)[0]).sample
        per_sample = ((pred.float() - target) ** 2).mean(dim=(1, 2, 3))
        loss = (per_sample * weights[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update()
        step += 1
        if step % cfg.log_every == 0 or step == 1:
            elapsed = time.time() - start
            log(
                phase="unet",
                step=step,
                loss=round(loss.item(), 5),
                v_mse=round(per_sample.mean().item(), 5),
                lr=round(opt.param_groups[0]["lr"], 7),
                seconds=round(elapsed, 1),
                steps_per_s=round(step / elapsed, 2),
            )
        if cfg.checkpoint_minutes and time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
            state = dict(
                optimizer=opt.state_dict(),
                ema=ema.shadow,
                ema_updates=ema.updates,
                step=step,
                generator=gen.get_state(),
                seconds=time.time() - start,
            )
            save_checkpoint(pipe, out / "checkpoint", ema, state)
            last_ckpt = time.time()
            log(phase="unet", step=step, checkpoint=str(out / "checkpoint"))
    last = round(loss.item(), 5) if step else None
    log(phase="unet", step=step, loss=last, seconds=round(time.time() - start, 1), done=True)
    return ema


@torch.no_grad()
def evaluate(pipe, queries: list[str], guidance: float, steps: int, device: torch.device, seed: int) -> dict:
    """Sample one image per query (seeded) and score it with the analyser: mean fidelity and per-attribute hits."""
    images = []
    for i in range(0, len(queries), 256):
        gen = torch.Generator(device).manual_seed(seed + i)
        out = pipe(
            queries[i : i + 256], num_inference_steps=steps, guidance_scale=guidance, generator=gen, output_type="np"
        )
        images.append((out.images * 255).round().astype(np.uint8))
    images = np.concatenate(images)
    hits = {a: [0, 0] for a in ATTRIBUTES}
    scores, missing = [], 0
    for image, query in zip(images, queries, strict=True):
        analysis = analyse(image)
        scores.append(fidelity(analysis, query))
        missing += not analysis.found
        read = analysis.attributes()
        for name, value in parse_query(query).items():
            hits[name][0] += read.get(name) == value
            hits[name][1] += 1
    accuracy = {a: round(h / max(n, 1), 4) for a, (h, n) in hits.items()}
    return dict(
        guidance=guidance,
        fidelity=round(float(np.mean(scores)), 4),
        accuracy=accuracy,
        all_right=round(float(np.mean([s == 1.0 for s in scores])), 4),
        no_object=missing,
        n=len(queries),
    )


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; returns the evaluation results."""
    from transformers import HfArgumentParser

    (cfg,) = HfArgumentParser(TrainConfig, description=__doc__.split("\n")[0]).parse_args_into_dataclasses(argv)
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else ("cpu" if cfg.device == "auto" else cfg.device)
    )
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # bf16 autocast on CUDA; fp32 on CPU (this CPU has no bf16 units, autocast there is slower).
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Logger(out / "training_log.jsonl", append=cfg.resume)
    t0 = time.time()

    new_tokenizer = build_compose_tokenizer() if cfg.world == "compose" else None
    if cfg.resume and (out / "checkpoint" / "train").is_dir():
        pipe = load_initial_pipeline(str(out / "checkpoint" / "train"))
        tokenizer, vae = pipe.tokenizer, pipe.vae
    elif cfg.init_from:
        pipe = load_initial_pipeline(cfg.init_from, new_tokenizer)
        tokenizer, vae = pipe.tokenizer, pipe.vae
    else:
        tokenizer = new_tokenizer or build_tokenizer()
        vae = toy_model.build_vae()
        pipe = assemble_pipeline(tokenizer, toy_model.build_text_encoder(tokenizer), toy_model.build_unet(), vae)
    data = prepare_data(cfg, tokenizer, device)
    pipe.to(device)
    sizes = {k: sum(p.numel() for p in getattr(pipe, k).parameters()) for k in ("unet", "text_encoder", "vae")}
    log(
        phase="data",
        images=len(data["images"]),
        captions=int(data["bank"].numel() // data["bank"].shape[-1]),
        examples=data["examples"],
        params=sizes,
        device=str(device),
        seconds=round(time.time() - t0, 1),
    )

    fine_tune = bool(cfg.init_from) or cfg.resume
    if not fine_tune:
        train_vae(cfg, vae, data, device, autocast, log)
    means, stds = encode_all(vae, data["images"], autocast)
    sample = means.float() + stds.float() * torch.randn(means.shape, device=device)
    if not fine_tune:  # a fine-tune keeps the latent space, and so the scale, it was trained in
        vae.register_to_config(scaling_factor=float(1.0 / sample.std()))
    pick = torch.randperm(len(means), device=device)[:4096]
    latent_rgb = toy_model.fit_latent_rgb(
        sample[pick] * vae.config.scaling_factor, to_model_space(data["images"][pick])
    )
    log(phase="latents", scaling_factor=vae.config.scaling_factor, latent_rgb_rmse=round(latent_rgb["rmse"], 4))
    vae.requires_grad_(False)

    ema = train_unet(cfg, pipe, data, (means, stds), device, autocast, log, out)
    ema.copy_to([pipe.unet, pipe.text_encoder])
    pipe.unet.eval()
    pipe.text_encoder.eval()
    pipe.save_pretrained(out, safe_serialization=True)
    (out / "latent_rgb.json").write_text(json.dumps(latent_rgb, indent=1))
    record = dict(
        config=dataclasses.asdict(cfg),
        params=sizes,
        device=str(device),
        torch=torch.__version__,
        scaling_factor=vae.config.scaling_factor,
        train_seconds=round(time.time() - t0, 1),
    )
    (out / "training_config.json").write_text(json.dumps(record, indent=1))

    # Evaluate the saved folder, reloaded as users load it, on the held-out queries.
    from diffusers import StableDiffusionPipeline

    reloaded = StableDiffusionPipeline.from_pretrained(out).to(device)
    reloaded.set_progress_bar_config(disable=True)
    results = []
    for g in [float(v) for v in cfg.eval_guidance.split(",") if v and cfg.eval_queries]:
        with autocast():
            if cfg.world == "compose":
                from promptloop_env.toy.compose_spec import evaluate_pipeline

                results.append(evaluate_pipeline(reloaded, cfg.eval_queries, g, cfg.eval_steps, cfg.seed))
            else:
                queries = list(TOY_TEST_QUERIES[: cfg.eval_queries])
                results.append(evaluate(reloaded, queries, g, cfg.eval_steps, device, cfg.seed))
        log(phase="eval", **results[-1])
    (out / "eval.json").write_text(json.dumps(results, indent=1))
    shutil.rmtree(out / "checkpoint", ignore_errors=True)  # the final folder supersedes it; keep what ships small
    log(phase="done", total_seconds=round(time.time() - t0, 1))
    return {"eval": results}


if __name__ == "__main__":
    main()

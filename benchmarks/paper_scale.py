"""Paper-size dry run: one GRPO iteration with the real architectures, random weights, at a reduced batch.

    python benchmarks/paper_scale.py                    # CPU: bf16, 2 episodes, 2 refinements, 4 steps
    python benchmarks/paper_scale.py --num_refinements 5 --num_inference_steps 50 --group_size 8 --queries 4 \\
        --compare_plain true --out benchmarks/results/paper_scale_gpu.json       # a GPU

Built from the architecture configs in ``benchmarks/configs/``, nothing downloaded (tokenizers are built in-process):

- policy: Qwen2.5-VL-3B-Instruct's architecture (text: hidden 2048, 36 layers, 16 heads, 2 KV heads, MLP 11008,
  vocab 151936, M-RoPE 16/24/24; vision: 32 blocks of 1280, window 112), 3.75e9 parameters, LoRA r=16 on the
  language model, gradient checkpointing;
- backbone: Stable Diffusion 1.5's UNet (320/640/1280/1280, cross-attention 768), VAE (128/256/512/512) and CLIP
  ViT-L/14 text encoder (768 wide, 12 layers, 77 tokens), DDIM, guidance 7.5, 512 px;
- reward: a model of ImageReward's size and shape (BLIP: ViT-L/16 at 224 px, a BERT-base text encoder with
  cross-attention to the image, and ImageReward's MLP head), 0.45e9 parameters.

It runs ``GRPOTrainer.step`` once and writes seconds and peak memory per phase (denoise: text encoding and UNet
steps in the env; preview: VAE decodes; reward; generate: the policy's sampling; reference: log-probabilities
without adapters; update: old log-probabilities, forward and backward, optimiser) to ``--out`` as JSON, and
prints a table. Peak memory is the process's resident set on CPU (sampled every 10 ms) and the CUDA allocator's
peak on a GPU, per phase. With ``--compare_plain`` it also times the full closed loop against plain
``pipe(query, ...)`` calls on the same batch (the paper reports 1.23x at 5 refinements for SDXL).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promptloop_env.cli import write_json

CONFIGS = Path(__file__).resolve().parent / "configs"
PHASES = ("build", "denoise", "preview", "reward", "generate", "reference", "update")


@dataclass
class IterationArgs:
    """One GRPO iteration on the paper's architectures: its batch, episodes and sizes (also gpu_check.py's)."""

    queries: int = field(default=1, metadata={"help": "queries per iteration"})
    group_size: int = field(default=2, metadata={"help": "episodes per query"})
    num_refinements: int = field(default=2, metadata={"help": "policy decisions per episode"})
    num_inference_steps: int = field(default=4, metadata={"help": "denoising steps per episode"})
    image_size: int = field(default=512, metadata={"help": "generated image side (SD1.5: 512)"})
    preview_size: int = field(default=448, metadata={"help": "preview side shown to the policy"})
    max_new_tokens: int = field(default=8, metadata={"help": "tokens the policy writes per decision"})
    micro_batch_size: int = field(default=2, metadata={"help": "actions per forward in the update"})


@dataclass
class Args(IterationArgs):
    out: str = field(default="benchmarks/results/paper_scale_cpu.json", metadata={"help": "result JSON"})
    dtype: str = field(default="bfloat16", metadata={"help": "dtype of every model (bfloat16 fits 24 GiB)"})
    compare_plain: bool = field(default=False, metadata={"help": "also time plain pipeline calls (slow on CPU)"})
    threads: int = field(default=0, metadata={"help": "torch threads (0 = torch's default)"})


# -- memory and time per phase ----------------------------------------------------------------------------------


class PhaseMeter:
    """Exclusive wall time and peak memory per named phase (nested phases pause their parent)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.peak_gib = dict.fromkeys(PHASES, 0.0)
        self.stack: list[str] = []
        self.mark = time.perf_counter()
        self._rss_peak = 0
        self._stop = threading.Event()
        if not self.cuda:
            threading.Thread(target=self._sample, daemon=True).start()

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._rss_peak = max(self._rss_peak, self._rss())
            time.sleep(0.01)

    def _close_interval(self) -> None:
        """Charge the time and peak since the last boundary to the phase on top of the stack."""
        now = time.perf_counter()
        if self.cuda:
            peak = torch.cuda.max_memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            peak = max(self._rss_peak, self._rss())
            self._rss_peak = 0
        if self.stack:
            top = self.stack[-1]
            self.seconds[top] += now - self.mark
            self.peak_gib[top] = max(self.peak_gib[top], peak / 2**30)
        self.mark = now

    @contextmanager
    def phase(self, name: str):
        if self.cuda:
            torch.cuda.synchronize()
        self._close_interval()
        self.stack.append(name)
        print(f"[{time.strftime('%H:%M:%S')}] {' > '.join(self.stack)}", flush=True)
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self._close_interval()
            self.stack.pop()

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return fn(*args, **kwargs)

        timed.__name__ = getattr(fn, "__name__", type(fn).__name__)  # e.g. the reward's component name
        return timed

    def close(self) -> None:
        self._stop.set()


# -- the models, from configs --------------------------------------------------------------------------------------


def architecture(name: str) -> dict[str, Any]:
    """The architecture config ``benchmarks/configs/NAME.json``: the values of a real checkpoint's ``config.json``
    that shape its models (which checkpoint: ``benchmarks/configs/README.md``)."""
    return json.loads((CONFIGS / f"{name}.json").read_text())


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@contextmanager
def fast_construction(dtype: torch.dtype):
    """Build modules directly in ``dtype`` and without their (slow) random initialisation; fill them afterwards
    with :func:`fill_random`. Initialising 5e9 parameters one normal draw at a time takes minutes on a CPU."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4
        from transformers.modeling_utils import no_init_weights
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with no_init_weights():
            yield
    finally:
        torch.set_default_dtype(previous)


@torch.no_grad()
def fill_random(module: torch.nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Gaussian weights (std ``std``) tiled from one seeded draw of a prime length; norm scales 1, biases 0."""
    noise = torch.randn(1_000_003, generator=torch.Generator().manual_seed(seed)) * std
    for name, parameter in module.named_parameters():
        if parameter.ndim == 1:
            parameter.fill_(1.0 if name.endswith("weight") else 0.0)
            continue
        flat, source = parameter.view(-1), noise.to(parameter.device, parameter.dtype)
        for start in range(0, flat.numel(), source.numel()):
            chunk = flat[start : start + source.numel()]
            chunk.copy_(source[: chunk.numel()])


def build_policy(args: IterationArgs, dtype: torch.dtype):
    """Qwen2.5-VL-3B-Instruct's architecture with random weights, a local tokenizer and processor."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from promptloop_agents.policies.mllm import MLLMAgent
    from promptloop_agents.policies.toy_policy import (
        SPECIAL_TOKENS,
        build_policy_tokenizer,
        build_toy_processor,
        world_words,
    )

    tokenizer = build_policy_tokenizer(world_words())
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = architecture("qwen2.5-vl-3b-instruct")
    config["text_config"] |= {"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]}
    config = Qwen2_5_VLConfig(
        **config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.tie_weights()  # lm_head shares the embedding, as in the checkpoint (skipped with the initialisation)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    processor = build_toy_processor(tokenizer, image_size=args.preview_size)
    agent = MLLMAgent(model, processor, max_new_tokens=args.max_new_tokens, answer_tag=None)
    # The local tokenizer is smaller than the 151936-row embedding: ids it cannot decode are banned (in sampling
    # and in the log-probabilities alike). Random weights rarely write an end token: answers run to max_new_tokens.
    agent.banned_token_ids = agent.banned_token_ids + list(range(len(tokenizer), config.text_config.vocab_size))
    return agent


def build_backbone(args: IterationArgs, dtype: torch.dtype):
    """Stable Diffusion 1.5's UNet, VAE and CLIP text encoder with random weights, and a local tokenizer."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from promptloop_env.backbones.tiny import make_scheduler
    from promptloop_env.text import build_clip_tokenizer
    from promptloop_env.toy.tokenizer import world_words

    tokenizer = build_clip_tokenizer(world_words(), model_max_length=77)
    config = architecture("stable-diffusion-v1-5")
    unet = UNet2DConditionModel(**config["unet"], sample_size=args.image_size // 8)
    vae = AutoencoderKL(**config["vae"], sample_size=args.image_size)
    special_ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("bos", "eos", "pad")}
    text_encoder = CLIPTextModel(CLIPTextConfig(**config["text_encoder"], **special_ids))
    pipe = StableDiffusionPipeline(
        vae=vae.to(dtype).eval(),
        text_encoder=text_encoder.to(dtype).eval(),
        tokenizer=tokenizer,
        unet=unet.to(dtype).eval(),
        scheduler=make_scheduler("ddim"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class ImageRewardSized(torch.nn.Module):
    """ImageReward's shape with random weights: BLIP ViT-L/16 image encoder, BERT-base text encoder with
    cross-attention to the image, and the MLP head (768 -> 1024 -> 128 -> 64 -> 16 -> 1) on the [CLS] state."""

    def __init__(self, tokenizer: Any) -> None:
        from transformers import BlipTextConfig, BlipVisionConfig
        from transformers.models.blip.modeling_blip import BlipVisionModel
        from transformers.models.blip.modeling_blip_text import BlipTextModel

        super().__init__()
        self.tokenizer = tokenizer
        config = architecture("imagereward")
        self.vision = BlipVisionModel(BlipVisionConfig(**config["vision_config"]))
        self.text = BlipTextModel(BlipTextConfig(**config["text_config"]), add_pooling_layer=False)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(768, 1024),
            torch.nn.Linear(1024, 128),
            torch.nn.Linear(128, 64),
            torch.nn.Linear(64, 16),
            torch.nn.Linear(16, 1),
        )

    @torch.no_grad()
    def __call__(self, images: np.ndarray, queries: list[str]) -> list[float]:
        param = next(self.parameters())
        pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(param.device, torch.float32)
        pixels = torch.nn.functional.interpolate(pixels / 127.5 - 1, size=(224, 224), mode="bilinear")
        image_states = self.vision(pixel_values=pixels.to(param.dtype)).last_hidden_state
        tokens = self.tokenizer(queries, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
        ids = tokens["input_ids"].clamp(max=30523).to(param.device)
        mask = tokens["attention_mask"].to(param.device)
        state = self.text(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=image_states,
            encoder_attention_mask=torch.ones(image_states.shape[:2], dtype=torch.long, device=param.device),
        ).last_hidden_state[:, 0]
        return self.mlp(state).float().squeeze(-1).cpu().tolist()


# -- the run --------------------------------------------------------------------------------------------------------


def recipe_envs(args: IterationArgs, pipe: Any, reward: Any, refine_schedule: str = "random") -> Any:
    """The recipe's vector env on ``pipe``: one episode per query and group member, guidance 7.5, VAE previews."""
    from promptloop_agents.rollout import make_vector_env

    return make_vector_env(
        args.queries * args.group_size,
        backbone=pipe,
        reward=reward,
        num_inference_steps=args.num_inference_steps,
        num_refinements=args.num_refinements,
        refine_schedule=refine_schedule,
        guidance_scale=7.5,
        preview="vae",
        preview_size=args.preview_size,
    )


def metered_envs(args: IterationArgs, pipe: Any, reward: Any, meter: Any) -> Any:
    """:func:`recipe_envs` (random refinement points) with ``meter`` timing its phases: ``denoise`` (reset and
    step), ``preview`` (the VAE decodes) and ``reward``. The caller puts ``pipe.vae.decode`` back when it needs the
    pipeline unmetered."""
    envs = recipe_envs(args, pipe, meter.wrap("reward", reward))
    pipe.vae.decode = meter.wrap("preview", pipe.vae.decode)
    envs.reset, envs.step = meter.wrap("denoise", envs.reset), meter.wrap("denoise", envs.step)
    return envs


def run(args: Args) -> dict[str, Any]:
    from promptloop_agents.learners.grpo_config import GRPOConfig
    from promptloop_agents.learners.grpo_trainer import GRPOTrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    meter = PhaseMeter(device)
    sizes: dict[str, int] = {}
    with meter.phase("build"):
        with fast_construction(dtype):
            policy = build_policy(args, dtype)
            pipe = build_backbone(args, dtype)
            reward = ImageRewardSized(pipe.tokenizer).eval()
        for index, module in enumerate((policy.model, pipe.unet, pipe.vae, pipe.text_encoder, reward)):
            fill_random(module, seed=index)
        pipe.to(device)
        reward.to(device, dtype)
    resident_gib = (torch.cuda.memory_allocated() if device.type == "cuda" else meter._rss()) / 2**30
    sizes["policy"] = count(policy.model)
    sizes["backbone"] = count(pipe.unet) + count(pipe.vae) + count(pipe.text_encoder)
    sizes["reward"] = count(reward)
    envs = metered_envs(args, pipe, reward, meter)
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="paper-scale-"),
        max_steps=1,
        queries_per_iteration=args.queries,
        group_size=args.group_size,
        learning_rate=1e-5,
        beta=0.04,  # the paper recipe's (GRPOConfig's default is TRL's 0.0): the reference phase is measured
        micro_batch_size=args.micro_batch_size,
        gradient_checkpointing=True,
        progress=False,
        save_every=10**9,
        resume=False,
    )
    queries = ["a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen", "a city street in the rain"]
    trainer = GRPOTrainer(policy, config, envs, queries)
    sizes["trainable"] = sum(p.numel() for p in trainer.params)
    policy.sample = meter.wrap("generate", policy.sample)
    trainer._reference_logps = meter.wrap("reference", trainer._reference_logps)
    trainer.update = meter.wrap("update", trainer.update)
    start = time.perf_counter()
    metrics = trainer.step()
    iteration_seconds = time.perf_counter() - start
    meter.close()
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "args": asdict(args),
        "parameters": sizes,
        "seconds": {k: round(v, 2) for k, v in meter.seconds.items()},
        "peak_memory_gib": {k: round(v, 2) for k, v in meter.peak_gib.items()},
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process RSS",
        "resident_after_build_gib": round(resident_gib, 2),
        "iteration_seconds": round(iteration_seconds, 2),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, float | int)},
    }
    if args.compare_plain:
        result["plain_vs_loop"] = compare_plain(args, pipe, policy, envs, queries)
    envs.close()
    return result


def compare_plain(args: Args, pipe: Any, policy: Any, envs: Any, queries: list[str]) -> dict[str, float]:
    """Seconds of one closed-loop batch (policy at every refinement, uniform schedule) vs plain pipeline calls."""
    from promptloop_agents.evaluation.harness import agent_act_fn
    from promptloop_agents.rollout import run_episodes

    batch = [queries[i % len(queries)] for i in range(envs.num_envs)]
    tick = time.perf_counter()
    run_episodes(envs, agent_act_fn(policy), batch, list(range(len(batch))))
    loop = time.perf_counter() - tick
    tick = time.perf_counter()
    pipe(batch, num_inference_steps=args.num_inference_steps, guidance_scale=7.5, output_type="np")
    plain = time.perf_counter() - tick
    return {"loop_seconds": loop, "plain_seconds": plain, "ratio": loop / plain}


def print_table(result: dict[str, Any]) -> None:
    print(f"{'phase':10s} {'seconds':>9s} {'peak GiB':>9s}")
    for phase in PHASES:
        print(f"{phase:10s} {result['seconds'][phase]:9.2f} {result['peak_memory_gib'][phase]:9.2f}")
    print(f"one GRPO iteration: {result['iteration_seconds']:.1f} s on {result['device']}")
    print("parameters:", {k: f"{v / 1e9:.3f}e9" for k, v in result["parameters"].items()})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(Args, description=__doc__.split("\n\n")[0]).parse_args_into_dataclasses(argv)
    result = run(args)
    write_json(args.out, result, indent=2)
    print_table(result)
    return result


if __name__ == "__main__":
    main()

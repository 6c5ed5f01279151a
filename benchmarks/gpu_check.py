"""One command that measures a GPU against the paper recipe: time and peak memory per phase, beside the recipe's
arithmetic, for LoRA and full fine-tuning with gradient checkpointing on and off, and the closed loop's cost.

    pip install -e ".[agents]"                   # from this checkout, torch with CUDA first; nothing is downloaded
    python benchmarks/gpu_check.py               # writes benchmarks/results/gpu_check_<gpu>.json (~6-8 min, H100)

On one GPU with at most 80 GB it builds the paper's architectures with random weights (from configs, as
``benchmarks/paper_scale.py`` does: Qwen2.5-VL-3B in bf16, SD1.5's UNet / VAE / CLIP text encoder in fp16, an
ImageReward-sized scorer in fp16), runs real ``GRPOTrainer`` iterations at the recipe's settings
(``recipes/paper-sd15-imagereward.yaml``: 4 groups of 8 episodes, 5 refinements, 50 DDIM steps, 448 px previews,
96 new tokens, micro-batches of 8, beta 0.04) under bf16 autocast over fp32 trainable weights, and writes per
phase (denoise, preview, reward, generate, reference, update) the seconds and the CUDA allocator's peak, the
recipe's counted peak beside each (:func:`counted_gib`), and the full loop at 5 refinements against plain
``pipe(query, ...)`` calls at the same settings. A variant that runs out of memory is recorded as such; variants
that would pass ``--max_minutes`` are skipped and say so. It refuses to start without CUDA.

The accelerate engines (FSDP2's ``prepare`` / ``save_state``, DeepSpeed) need several processes or the
``deepspeed`` wheel and are not run here: this is the one-process figure the recipes' memory notes rest on.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # paper_scale.py, beside this file
import paper_scale  # noqa: E402

from promptloop_env.cli import with_defaults, write_json

GIB = 2**30
VARIANTS = (("lora", True), ("lora", False), ("full", True), ("full", False))
"""(finetuning, gradient_checkpointing) pairs, in the order they run (most likely to fit first)."""
QWEN_3B = {"layers": 36, "hidden": 2048, "kv_heads": 2, "head_dim": 128, "vocab": 151936, "mlp": 11008}


RECIPE = {
    "queries": 4,
    "group_size": 8,
    "num_refinements": 5,
    "num_inference_steps": 50,
    "max_new_tokens": 96,
    "micro_batch_size": 8,
}
"""``recipes/paper-sd15-imagereward.yaml``'s iteration: the check's defaults."""


@dataclass
class CheckArgs(with_defaults(paper_scale.IterationArgs, **RECIPE)):
    """The recipe's iteration (:data:`RECIPE`), and how long and on how much memory the check runs."""

    out: str = field(default="", metadata={"help": "result JSON (default benchmarks/results/gpu_check_<gpu>.json)"})
    iterations: int = field(default=2, metadata={"help": "GRPO iterations per variant; the last one is reported"})
    max_minutes: float = field(default=8.0, metadata={"help": "skip variants that would start after this"})
    max_gpu_gib: float = field(default=80.0, metadata={"help": "memory cap: the GPU's share the run may use"})


def gpu_slug(name: str) -> str:
    """A file-name slug of a GPU name.

    >>> gpu_slug("NVIDIA H100 80GB HBM3")
    'h100_80gb_hbm3'
    """
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("nvidia", "")).strip("_")


def counted_gib(args: CheckArgs, sizes: dict[str, int], finetuning: str, checkpointing: bool) -> dict[str, float]:
    """The recipe's arithmetic: the peak each phase should reach, in GiB, from parameter counts and settings.

    Resident throughout: policy weights (bf16; fp32 master weights under full fine-tuning, plus a bf16 reference),
    trainable state (fp32 weight, gradient and two AdamW moments = 16 B per trainable parameter, 12 B beyond the
    weight itself under full fine-tuning), the backbone and the reward (fp16). On top, per phase: the KV cache of
    generation, the VAE decode of the previews, and the update's activations (checkpointed: each layer's input;
    otherwise ~32 hidden-size activations per token and layer) and logits (fp32, ~4 copies).

    >>> sizes = {"policy": 3_750_000_000, "trainable": 30_000_000, "backbone": 1_060_000_000, "reward": 450_000_000}
    >>> round(counted_gib(CheckArgs(), sizes, "lora", True)["update"], 1)
    12.5
    """
    q = QWEN_3B
    episodes = args.queries * args.group_size
    tokens = 400 + args.max_new_tokens  # ~256 visual tokens, the chat text, the answer
    if finetuning == "full":
        weights = sizes["policy"] * 4 + sizes["policy"] * 2 * 1  # fp32 master + bf16 reference (beta > 0)
        trainable = sizes["trainable"] * 12
    else:
        weights, trainable = sizes["policy"] * 2, sizes["trainable"] * 16
    resident = weights + trainable + (sizes["backbone"] + sizes["reward"]) * 2
    kv_cache = episodes * tokens * q["layers"] * 2 * q["kv_heads"] * q["head_dim"] * 2
    previews = episodes * 128 * 512 * 512 * 2 * 2  # the VAE decoder's widest maps at 512 px, two alive
    per_token_layer = q["hidden"] * 2 * (1 if checkpointing else 32)
    activations = args.micro_batch_size * tokens * q["layers"] * per_token_layer
    logits = args.micro_batch_size * args.max_new_tokens * q["vocab"] * 4 * 4
    extra = {"denoise": 0, "preview": previews, "reward": 0, "generate": kv_cache, "reference": logits}
    extra["update"] = activations + logits
    return {phase: round((resident + value) / GIB, 2) for phase, value in extra.items()}


def require_cuda() -> None:
    """Refuse to start without a CUDA GPU (the check measures one; a CPU figure is paper_scale.py's job)."""
    if not torch.cuda.is_available():
        raise SystemExit(
            "gpu_check needs a CUDA GPU (torch.cuda.is_available() is False). It builds the paper's 3.75e9-parameter "
            "policy and SD1.5 on one GPU; on a CPU run benchmarks/paper_scale.py instead."
        )


def _shared_models(args: CheckArgs, device: torch.device) -> tuple[Any, Any]:
    """SD1.5's pipeline (fp16) and the ImageReward-sized scorer (fp16), random weights, on the GPU."""
    with paper_scale.fast_construction(torch.float16):
        pipe = paper_scale.build_backbone(args, torch.float16)
        reward = paper_scale.ImageRewardSized(pipe.tokenizer).eval()
    pipe.to(device)
    reward.to(device, torch.float16)
    for index, module in enumerate((pipe.unet, pipe.vae, pipe.text_encoder, reward)):
        paper_scale.fill_random(module, seed=index + 1)
    return pipe, reward


def run_variant(args: CheckArgs, pipe: Any, reward: Any, finetuning: str, checkpointing: bool) -> dict[str, Any]:
    """``args.iterations`` GRPO iterations of one variant; seconds and peaks of the last one, per phase."""
    from accelerate import Accelerator

    from promptloop_agents.learners.grpo_config import GRPOConfig
    from promptloop_agents.learners.grpo_trainer import GRPOTrainer

    device = torch.device("cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with paper_scale.fast_construction(torch.bfloat16):
        policy = paper_scale.build_policy(args, torch.bfloat16)
    policy.model.to(device)
    paper_scale.fill_random(policy.model, seed=0)
    meter = paper_scale.PhaseMeter(device)
    decode = pipe.vae.decode
    envs = paper_scale.metered_envs(args, pipe, reward, meter)
    config = GRPOConfig(
        output_dir=f"/tmp/gpu-check-{finetuning}-{int(checkpointing)}",
        max_steps=args.iterations,
        queries_per_iteration=args.queries,
        group_size=args.group_size,
        learning_rate=1e-5,
        beta=0.04,
        loss_type="dapo",
        finetuning=finetuning,
        gradient_checkpointing=checkpointing,
        micro_batch_size=args.micro_batch_size,
        progress=False,
        save_every=10**9,
        resume=False,
    )
    accelerator = Accelerator(mixed_precision="bf16")  # bf16 compute over fp32 trainable weights, as ddp.yaml
    queries = ["a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen", "a city street in the rain"]
    result: dict[str, Any] = {"finetuning": finetuning, "gradient_checkpointing": checkpointing}
    trainer = None
    try:  # full fine-tuning may run out of memory already while its fp32 master weights are made
        trainer = GRPOTrainer(policy, config, envs, queries * args.queries, accelerator)
        sizes = {"policy": paper_scale.count(policy.model), "trainable": sum(p.numel() for p in trainer.params)}
        sizes |= {"backbone": sum(paper_scale.count(m) for m in (pipe.unet, pipe.vae, pipe.text_encoder))}
        sizes["reward"] = paper_scale.count(reward)
        result["parameters"] = sizes
        policy.sample = meter.wrap("generate", policy.sample)
        trainer._reference_logps = meter.wrap("reference", trainer._reference_logps)
        trainer.update = meter.wrap("update", trainer.update)
        for _ in range(args.iterations):
            meter.seconds = dict.fromkeys(paper_scale.PHASES, 0.0)
            meter.peak_gib = dict.fromkeys(paper_scale.PHASES, 0.0)
            start = time.perf_counter()
            metrics = trainer.step()
            result["iteration_seconds"] = round(time.perf_counter() - start, 2)
        counted = counted_gib(args, sizes, finetuning, checkpointing)
        result["phases"] = {
            phase: {
                "seconds": round(meter.seconds[phase], 2),
                "peak_gib": round(meter.peak_gib[phase], 2),
                "counted_gib": counted[phase],
            }
            for phase in counted
        }
        result["reward_mean"] = metrics["reward_mean"]
    except torch.cuda.OutOfMemoryError as err:
        result["out_of_memory"] = str(err).splitlines()[0]
    finally:
        meter.close()
        pipe.vae.decode = decode
        envs.close()
        del trainer, policy
        torch.cuda.empty_cache()
    return result


def plain_versus_loop(args: CheckArgs, pipe: Any, reward: Any) -> dict[str, float]:
    """Seconds of the closed loop (LoRA policy, uniform schedule, 5 refinements) against plain pipeline calls."""
    from promptloop_agents.evaluation.harness import agent_act_fn
    from promptloop_agents.rollout import run_episodes

    with paper_scale.fast_construction(torch.bfloat16):
        policy = paper_scale.build_policy(args, torch.bfloat16)
    policy.model.to("cuda")
    paper_scale.fill_random(policy.model, seed=0)
    episodes = args.queries * args.group_size
    envs = paper_scale.recipe_envs(args, pipe, reward, refine_schedule="uniform")
    queries = ["a red fox in the snow"] * episodes
    with torch.autocast("cuda", dtype=torch.bfloat16):
        torch.cuda.synchronize()
        tick = time.perf_counter()
        run_episodes(envs, agent_act_fn(policy), queries, list(range(episodes)))
        torch.cuda.synchronize()
        loop = time.perf_counter() - tick
    tick = time.perf_counter()
    pipe(queries, num_inference_steps=args.num_inference_steps, guidance_scale=7.5, output_type="np")
    torch.cuda.synchronize()
    plain = time.perf_counter() - tick
    envs.close()
    return {"loop_seconds": round(loop, 2), "plain_seconds": round(plain, 2), "ratio": round(loop / plain, 2)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(CheckArgs, description=__doc__.split("\n\n")[0]).parse_args_into_dataclasses(argv)
    require_cuda()
    started = time.perf_counter()
    name = torch.cuda.get_device_name()
    total = torch.cuda.get_device_properties(0).total_memory / GIB
    if total > args.max_gpu_gib:  # a larger GPU measures as an 80 GB one would
        torch.cuda.set_per_process_memory_fraction(args.max_gpu_gib / total)
    result: dict[str, Any] = {"gpu": name, "gpu_memory_gib": round(total, 1), "args": asdict(args), "variants": []}
    result["torch"], result["cuda"] = torch.__version__, torch.version.cuda
    pipe, reward = _shared_models(args, torch.device("cuda"))
    for finetuning, checkpointing in VARIANTS:
        elapsed = (time.perf_counter() - started) / 60
        if result["variants"] and elapsed > args.max_minutes * 0.75:
            result["variants"].append({"finetuning": finetuning, "gradient_checkpointing": checkpointing})
            result["variants"][-1]["skipped"] = f"{elapsed:.1f} min already spent (--max_minutes {args.max_minutes})"
            continue
        print(f"[{elapsed:5.1f} min] {finetuning}, gradient checkpointing {checkpointing}", flush=True)
        result["variants"].append(run_variant(args, pipe, reward, finetuning, checkpointing))
    result["plain_versus_loop"] = plain_versus_loop(args, pipe, reward)
    result["total_minutes"] = round((time.perf_counter() - started) / 60, 2)
    out = Path(args.out or Path(__file__).parent / "results" / f"gpu_check_{gpu_slug(name)}.json")
    write_json(out, result, indent=2)
    for variant in result["variants"]:
        print(variant["finetuning"], variant["gradient_checkpointing"], variant.get("phases") or variant)
    print("closed loop vs plain:", result["plain_versus_loop"], f"-> {out}")
    return result


if __name__ == "__main__":
    main()

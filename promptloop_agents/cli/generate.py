"""``promptloop generate``: images from a trained policy and any backbone, one prompt or a file of them.

    promptloop generate "a red circle left of a blue square" --backbone toy-compose \\
        --policy promptloop_agents/assets/toy-compose-policy --out out.png
    promptloop generate --prompts prompts.txt --out-dir runs/gen --filmstrip --seed 0
    accelerate launch --num_processes 2 -m promptloop_agents.cli.main generate --prompts prompts.txt --out-dir runs/gen

With ``--prompts FILE`` (one prompt per line) the folder gets ``00000.png``, ... (line order) and
``generations.jsonl`` (a line per image: file, query, noise seed, the prompts written, their refinement steps), and
with ``--filmstrip`` ``00000_filmstrip.png`` beside each image (the previews the policy saw, with what it wrote).
Under ``accelerate launch`` each process generates its share of the lines (``split_between_processes``) and the
main process writes ``generations.jsonl`` from the gathered records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptloop_agents.configs import config_field, parse_dtype
from promptloop_agents.rollout import load_queries

IMAGE_NAME = "{index:05d}.png"
RECORDS_FILE = "generations.jsonl"


@dataclass
class GenerateConfig:
    """Options of ``promptloop generate`` (None: the policy's saved generation settings)."""

    prompts: str | None = config_field(None, "A text file with one prompt per line (or a built-in prompt set).")
    out: str | None = config_field(None, "Output PNG of a single prompt.")
    out_dir: str | None = config_field(None, "Output folder of --prompts: images and generations.jsonl.")
    backbone: str | None = config_field(
        None, "Diffusion backbone: registry name, folder or hub id (default: the one the policy was trained with)."
    )
    policy: str = config_field(
        "toy-compose", "Policy folder or hub id, or a shipped policy's name (toy-compose, shipped)."
    )
    mode: str = config_field("closed-loop", "closed-loop (the policy sees previews) | a-priori (it does not).")
    num_inference_steps: int | None = config_field(None, "Denoising steps.")
    num_refinements: int | None = config_field(None, "Refinement points (0 = plain sampling, no policy).")
    refine_schedule: str | None = config_field(None, "uniform | random | step indices like '0,9,11,13,15'.")
    guidance_scale: float | None = config_field(None, "Classifier-free guidance (default: the backbone's).")
    negative_prompt: str | None = config_field(None, "Negative prompt.")
    num_images_per_prompt: int = config_field(1, "Images per prompt, each with its own noise seed.")
    seed: int = config_field(0, "Noise seed of the first image; image i of the run gets seed + i.")
    batch_size: int = config_field(16, "Images generated together (one batched policy call per refinement point).")
    filmstrip: bool = config_field(False, "Also save the previews the policy saw, with its prompts, beside each.")
    device: str | None = config_field(None, "Device (default: accelerate's, else cpu).")
    torch_dtype: str | None = config_field(None, "bfloat16 | float16 | float32 (default: the weights').")


def add_generate_parser(commands: Any) -> None:
    """Register ``generate`` on the ``promptloop`` sub-command parsers (``HfArgumentParser`` ones)."""
    parser = commands.add_parser(
        "generate",
        dataclass_types=[GenerateConfig],
        help="Generate images with a trained policy: one prompt (--out) or a file of prompts (--out-dir).",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("prompt", nargs="?", default=None, help="The prompt (or use --prompts FILE).")


def generate(config: GenerateConfig, prompt: str | None = None) -> list[dict[str, Any]]:
    """Run ``promptloop generate``; returns the records of the images this process wrote."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    from promptloop_agents.pipeline import PromptLoopPipeline

    if (prompt is None) == (config.prompts is None):
        raise ValueError("Give either a prompt or --prompts FILE.")
    if prompt is not None and not config.out:
        raise ValueError("A single prompt needs --out PATH.png.")
    if config.prompts is not None and not config.out_dir:
        raise ValueError("--prompts needs --out-dir DIR.")
    queries = [prompt] if prompt is not None else load_queries(config.prompts)
    import torch

    # On a CPU-only machine accelerate's processes talk gloo only when asked for the CPU (as training does).
    state = PartialState(cpu=not torch.cuda.is_available())
    device = config.device or ("cpu" if state.device.type == "cpu" else str(state.device))
    from promptloop_agents.policies.mllm import MLLMAgent
    from promptloop_agents.policies.toy_policy import SHIPPED_POLICIES

    source = str(SHIPPED_POLICIES.get(config.policy, config.policy))
    policy = MLLMAgent.from_pretrained(source, torch_dtype=parse_dtype(config.torch_dtype), device=device)
    policy.do_sample = policy.generation.do_sample
    backbone = config.backbone or policy.generation.backbone
    if backbone is None:
        raise ValueError(f"The policy {config.policy!r} records no backbone: pass --backbone.")
    pipe = PromptLoopPipeline(backbone, policy, device=device, torch_dtype=parse_dtype(config.torch_dtype))
    per_prompt = config.num_images_per_prompt
    jobs = [(i * per_prompt + k, q) for i, q in enumerate(queries) for k in range(per_prompt)]
    records = []
    with state.split_between_processes(jobs) as mine:
        for start in range(0, len(mine), config.batch_size):
            chunk = mine[start : start + config.batch_size]
            out = pipe(
                [q for _, q in chunk],
                num_inference_steps=config.num_inference_steps,
                guidance_scale=config.guidance_scale,
                num_refinements=config.num_refinements,
                refine_schedule=config.refine_schedule,
                mode=config.mode,
                seed=[config.seed + index for index, _ in chunk],
                negative_prompt=config.negative_prompt,
                return_trajectory=config.filmstrip,
            )
            for j, ((index, _), record) in enumerate(zip(chunk, out.records(), strict=True)):
                path = image_path(config, index, single=prompt is not None)
                path.parent.mkdir(parents=True, exist_ok=True)
                out.images[j].save(path)
                record = {"index": index, "file": path.name, **record}
                if config.filmstrip:
                    record["filmstrip"] = save_filmstrip(path, out.previews[j], out.images[j], record)
                records.append(record)
    every = sorted(gather_object(records), key=lambda r: r["index"]) if state.num_processes > 1 else records
    if state.is_main_process:
        if config.out_dir and prompt is None:
            with open(Path(config.out_dir) / RECORDS_FILE, "w") as f:
                f.writelines(json.dumps(record) + "\n" for record in every)
        for record in every:
            print(f"{record['file']}: {record['query']!r} -> {record['prompts'][-1] if record['prompts'] else '-'!r}")
    return records


def image_path(config: GenerateConfig, index: int, single: bool) -> Path:
    """Where image ``index`` goes: ``--out`` (``stem_<index>.png`` when a prompt makes several), or the folder's
    ``00000.png``-style name."""
    if not single:
        return Path(config.out_dir) / IMAGE_NAME.format(index=index)
    out = Path(config.out)
    return out if config.num_images_per_prompt == 1 else out.with_name(f"{out.stem}_{index}{out.suffix}")


def save_filmstrip(image_path: Path, previews: list[Any], final: Any, record: dict[str, Any]) -> str:
    """Save ``<image>_filmstrip.png``: each preview with the prompt written on it, then the final image."""
    import numpy as np

    from promptloop_env.viz import filmstrip, save_png

    steps, prompts = record["refine_steps"], record["prompts"]
    captions = [f"step {s}: {p}" for s, p in zip(steps, prompts, strict=True)] + ["final"]
    frames = [*previews[: len(prompts)], np.asarray(final)]
    path = image_path.with_name(image_path.stem + "_filmstrip.png")
    save_png(filmstrip(frames, captions, frame_size=128, title=record["query"]), path)
    return path.name

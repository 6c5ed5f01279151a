"""``python -m promptloop_env.rewards.geneval IMAGE_FOLDER``: GenEval's evaluation of a folder of images, no mmdet.

Two layouts are read:

- GenEval's (``generation/diffusers_generate.py``): ``IMAGE_FOLDER/<index>/metadata.jsonl`` (the prompt's
  metadata) and ``IMAGE_FOLDER/<index>/samples/*.png``;
- flat: ``IMAGE_FOLDER/<index>[_anything].png`` (or ``.jpg``), scored against prompt ``index`` (from 0) of
  ``--metadata`` (the ``geneval`` set by default, or a ``.jsonl`` prompt file with GenEval's fields).

Writes one JSON line per image (``--out``: filename, tag, prompt, correct, soft, constraints, objects) and prints
GenEval's summary: the share of correct images per category and their mean ("overall score"). With
``--compare RESULTS.jsonl`` (the official scorer's output, ``evaluation/evaluate_images.py --outfile``, on the same
folder) it also prints how often the two verdicts agree, per category, and the two overall scores.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

_IMAGE = re.compile(r"^(\d+)(?:[_\-.].*)?\.(png|jpg|jpeg|webp)$", re.IGNORECASE)


def find_images(folder: Path, metadata: str) -> list[tuple[Path, dict]]:
    """``(image path, its prompt's metadata)`` for every image of ``folder`` in either layout, in order."""
    from promptloop_env.prompts import load_prompts

    found: list[tuple[Path, dict]] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()):
        meta_file = sub / "metadata.jsonl"
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            found += [(p, meta) for p in sorted((sub / "samples").glob("*")) if _IMAGE.match(p.name)]
    flat = sorted((p for p in folder.iterdir() if p.is_file() and _IMAGE.match(p.name)), key=lambda p: p.name)
    if flat:
        prompt_set = load_prompts(metadata)
        for p in flat:
            index = int(_IMAGE.match(p.name)[1])
            if index >= len(prompt_set):
                raise ValueError(f"{p.name}: index {index} is past the {len(prompt_set)} prompts of {metadata!r}.")
            found.append((p, {"prompt": prompt_set[index], **prompt_set.metadata[index]}))
    if not found:
        raise ValueError(f"No images in {folder} (GenEval's <index>/samples/*.png, or <index>_*.png).")
    return found


def summary(rows: list[dict]) -> str:
    """GenEval's summary: images, share correct, per-category accuracy and their mean."""
    by_tag: dict[str, list[bool]] = {}
    for row in rows:
        by_tag.setdefault(row["tag"], []).append(row["correct"])
    lines = [f"Total images: {len(rows)}", f"% correct images: {np.mean([r['correct'] for r in rows]):.2%}", ""]
    lines += [f"{tag:<16} = {np.mean(v):.2%} ({sum(v)} / {len(v)})" for tag, v in by_tag.items()]
    lines += ["", f"Overall score (avg. over tasks): {np.mean([np.mean(v) for v in by_tag.values()]):.5f}"]
    return "\n".join(lines)


def agreement(rows: list[dict], official_file: Path) -> str:
    """Per-image agreement of our verdicts with the official scorer's ``results.jsonl`` on the same images.

    Images are matched by the last three parts of their path (``<index>/samples/<name>.png``).
    """

    def key(name: str) -> str:
        return "/".join(Path(name).parts[-3:])

    official = {}
    for line in official_file.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            official[key(record["filename"])] = {"tag": record["tag"], "correct": bool(record["correct"])}
    pairs = [(r, official[key(r["filename"])]) for r in rows if key(r["filename"]) in official]
    if not pairs:
        raise ValueError(f"No image of {official_file} matches the scored ones by <index>/samples/<name>.")
    same: dict[str, list[bool]] = {}
    for ours, theirs in pairs:
        same.setdefault(ours["tag"], []).append(ours["correct"] == theirs["correct"])
    overall = np.mean([a for v in same.values() for a in v])
    lines = [f"Agreement with {official_file.name} on {len(pairs)} images: {overall:.2%}"]
    lines += [f"{tag:<16} = {np.mean(v):.2%}" for tag, v in same.items()]
    scores = [
        summary(side).splitlines()[-1].split(": ")[-1] for side in ([o for o, _ in pairs], [t for _, t in pairs])
    ]
    lines.append(f"Overall score: ours {scores[0]}, official {scores[1]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the command line (see the module doc); returns the per-image rows."""
    import torch

    from promptloop_env.prompts import PromptSet, index_metadata
    from promptloop_env.rewards.geneval import GenEval

    prog = "python -m promptloop_env.rewards.geneval"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="the images (GenEval's layout or <index>_*.png)")
    parser.add_argument("--out", type=Path, default=Path("geneval_results.jsonl"), help="per-image results")
    parser.add_argument("--metadata", default="geneval", help="prompt set or .jsonl for flat folders")
    parser.add_argument("--detector", default=None, help="hub id or folder of the transformers detector")
    parser.add_argument("--detector-kind", default="auto", help="auto | mask2former | object-detection | zero-shot")
    parser.add_argument("--clip", default=None, help="hub id or folder of the CLIP colour classifier")
    parser.add_argument("--detector-size", type=int, default=800, help="Mask2Former's shorter side (0: its own)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--local-files-only", action="store_true", help="never reach the hub")
    parser.add_argument("--compare", type=Path, default=None, help="the official scorer's results.jsonl")
    args = parser.parse_args(argv)

    images = find_images(args.folder, args.metadata)
    index_metadata(PromptSet(str(args.folder), tuple(m["prompt"] for _, m in images), tuple(m for _, m in images)))
    reward = GenEval(
        detector=args.detector,
        clip=args.clip,
        detector_kind=args.detector_kind,
        detector_size=args.detector_size or None,
        device=args.device,
        torch_dtype=getattr(torch, args.dtype),
        batch_size=args.batch_size,
        local_files_only=args.local_files_only,
    )
    rows = []
    for path, meta in images:
        image = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        reward(image[None], [meta["prompt"]])
        detail = reward.details[0]
        rows.append(
            {
                "filename": str(path),
                "tag": detail["tag"],
                "prompt": meta["prompt"],
                "correct": bool(detail["strict"]),
                "soft": detail["soft"],
                "constraints": detail["constraints"],
                "objects": detail["objects"],
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(summary(rows), file=sys.stdout)
    if args.compare is not None:
        print("\n" + agreement(rows, args.compare), file=sys.stdout)
    return rows

"""``promptloop generate`` writes what it says: the image, the folder of images, generations.jsonl, filmstrips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from promptloop_agents.cli.main import main
from promptloop_agents.pipeline import PromptLoopPipeline
from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY

FAST = ["--backbone", "tiny", "--num-inference-steps", "4", "--num-refinements", "2"]


def test_single_prompt_with_filmstrip(tmp_path, capsys):
    out = tmp_path / "sub" / "out.png"
    assert main(["generate", "a red circle left of a blue square", *FAST, "--out", str(out), "--filmstrip"]) == 0
    assert Image.open(out).size == (64, 64)
    strip = Image.open(tmp_path / "sub" / "out_filmstrip.png")
    assert strip.size[0] > 3 * 128  # two previews and the final image
    assert "out.png: 'a red circle left of a blue square' ->" in capsys.readouterr().out


def test_prompt_file_writes_images_and_generations_jsonl(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a circle\ntwo squares\n\na red triangle\n")
    out_dir = tmp_path / "gen"
    args = ["generate", "--prompts", str(prompts), "--out-dir", str(out_dir), *FAST, "--seed", "5"]
    assert main([*args, "--batch-size", "1", "--num-images-per-prompt", "2"]) == 0
    records = [json.loads(line) for line in (out_dir / "generations.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == [f"{i:05d}.png" for i in range(6)]
    assert [r["query"] for r in records] == ["a circle"] * 2 + ["two squares"] * 2 + ["a red triangle"] * 2
    assert [r["noise_seed"] for r in records] == list(range(5, 11))
    assert all(len(r["prompts"]) == 2 and r["refine_steps"] == [0, 2] for r in records)
    # each line replays its image bit for bit (made one at a time: --batch-size 1)
    policy = MLLMAgent.from_pretrained(SHIPPED_TOY_COMPOSE_POLICY)
    pipe = PromptLoopPipeline("tiny", policy)
    record = records[3]
    image = pipe.replay(record["prompts"], record["noise_seed"], record["refine_steps"], 4, output_type="np")
    assert np.array_equal(np.asarray(Image.open(out_dir / record["file"])), image)


def test_usage_errors(tmp_path, capsys):
    """A usage error is one line on stderr and exit code 2 (``--debug`` raises it)."""
    assert main(["generate", *FAST, "--out", str(tmp_path / "x.png")]) == 2
    assert "either a prompt or --prompts" in capsys.readouterr().err
    assert main(["generate", "a circle", *FAST]) == 2
    assert "--out PATH" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--out PATH"):
        main(["generate", "a circle", *FAST, "--debug"])


@pytest.mark.slow
def test_prompts_split_across_accelerate_processes(tmp_path):
    """Two gloo processes each generate their share of the lines; the main one writes every record."""
    import os
    import subprocess
    import sys

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a circle\ntwo squares\na red triangle\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    args = ["generate", "--prompts", str(prompts), *FAST, "--batch-size", "1"]
    cli = ["-m", "promptloop_agents.cli.main", *args, "--out-dir", str(tmp_path / "two")]
    subprocess.run([*launch, *cli], check=True, env=env, timeout=600, capture_output=True)
    assert main([*args, "--out-dir", str(tmp_path / "one")]) == 0
    two = (tmp_path / "two" / "generations.jsonl").read_text()
    assert two == (tmp_path / "one" / "generations.jsonl").read_text() and len(two.splitlines()) == 3
    for i in range(3):
        name = f"{i:05d}.png"
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / "two" / name)), np.asarray(Image.open(tmp_path / "one" / name))
        )

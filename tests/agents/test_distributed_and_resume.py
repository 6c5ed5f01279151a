"""Slow tier: two-process training through accelerate, and resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TRAIN = [
    "--backbone",
    "tiny",
    "--reward",
    "jpeg-incompressibility",
    "--num-inference-steps",
    "4",
    "--num-refinements",
    "2",
    "--preview-size",
    "32",
    "--toy-size",
    "tiny",
    "--warm-start-episodes",
    "4",
    "--warm-start-steps",
    "3",
    "--queries-per-iteration",
    "2",
    "--group-size",
    "2",
    "--max-new-tokens",
    "6",
    "--train-prompts",
    "toy-train",
    "--progress",
    "false",
    "--save-every",
    "1",
]


RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "paper-sd15-imagereward.yaml"
# The paper recipe with tiny same-architecture stand-ins: a tiny SD pipeline (UNet + CLIP text + VAE), the tiny
# Qwen2.5-VL toy policy under LoRA, weight-free rewards, fp32 on CPU; its GRPO settings (dapo, beta 0.04,
# penalties, gradient checkpointing, held-out evaluation) as written.
PAPER_ON_CPU = [
    "--config",
    str(RECIPE),
    *TRAIN,
    "--torch-dtype",
    "float32",
    "--reward-dtype",
    "float32",
    "--policy",
    "toy",
    "--policy-dtype",
    "float32",
    "--micro-batch-size",
    "4",
    "--eval-every",
    "2",
    "--eval-prompts",
    "toy-test",
    "--eval-metrics",
    "jpeg-compressibility",
    "--eval-queries",
    "3",  # odd: the ranks' shares are padded to equal size
    "--max-steps",
    "2",
]


def _env():
    root = str(Path(__file__).resolve().parents[2])  # this checkout first, before any installed copy
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([root, *(p for p in sys.path if p)]),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(
        "import sys, torch\n"
        "from accelerate import Accelerator\n"
        "from promptloop_agents.cli.main import parse_args\n"
        "from promptloop_agents.configs import EnvConfig, config_from_args\n"
        "from promptloop_agents.learners.grpo_config import GRPOConfig\n"
        "from promptloop_agents.policies.policy_config import PolicyConfig\n"
        "from promptloop_agents.cli.train import train\n"
        "torch.set_num_threads(1)\n"
        "args = parse_args(['train', *sys.argv[1:]])  # --config's values, then the flags\n"
        "acc = Accelerator(cpu=True)\n"
        "agent = train(config_from_args(EnvConfig, args), config_from_args(PolicyConfig, args),\n"
        "                     config_from_args(GRPOConfig, args), accelerator=acc)\n"
        "lora = torch.cat([p.detach().flatten() for n, p in agent.model.named_parameters() if 'lora_' in n])\n"
        "torch.save({'world': acc.num_processes, 'lora': lora}, f'{args.output_dir}/rank{acc.process_index}.pt')\n"
    )
    run = tmp_path / "run"
    # On a CPU-only machine `--cpu` silently starts one process; --multi_gpu without GPUs gives two gloo ones.
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(script),
        *PAPER_ON_CPU,
        "--output-dir",
        str(run),
    ]
    done = subprocess.run(command, env=_env(), timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert torch.equal(ranks[0]["lora"], ranks[1]["lora"])  # DDP kept the adapters in sync
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [1, 2]
    assert "eval/jpeg-compressibility" in lines[1] and "eval/jpeg-compressibility" not in lines[0]


@pytest.mark.slow
def test_the_paper_recipe_on_one_process(tmp_path):
    from promptloop_agents.cli.main import main

    assert main(["train", *PAPER_ON_CPU, "--output-dir", str(tmp_path / "run"), "--debug"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [1, 2] and "eval/jpeg-compressibility" in lines[1]
    assert (tmp_path / "run" / "policy" / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """A run killed with SIGKILL resumes from its last complete checkpoint and finishes.

    (That the continuation is exact is tested in-process by test_grpo.py::test_resume_continues_exactly; across
    processes the tiny backbone's in-process-trained tokenizer is not reproducible, so images differ.)
    """
    run = tmp_path / "run"
    cli = [
        sys.executable,
        "-m",
        "promptloop_agents.cli.main",
        "train",
        *TRAIN,
        "--max-steps",
        "5",
        "--keep-checkpoints",
        "10",
        "--output-dir",
        str(run),
    ]
    process = subprocess.Popen(cli, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (run / "checkpoints" / "checkpoint-000002.safetensors").exists():
        assert process.poll() is None and time.time() < deadline, "training ended before its second checkpoint"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "policy").exists()
    done = {p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith(".")}
    warm = (run / "warm_start" / "model.safetensors").read_bytes()
    checkpoint = load_file(str(run / "checkpoints" / "checkpoint-000002.safetensors"))

    resumed = subprocess.run(cli, check=True, env=_env(), timeout=600, capture_output=True, text=True)
    assert "checkpoint-000002.safetensors (iteration 2)" in resumed.stderr
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [1, 2, 3, 4, 5]
    assert (run / "warm_start" / "model.safetensors").read_bytes() == warm  # the warm start was reused
    again = load_file(str(run / "checkpoints" / "checkpoint-000002.safetensors"))
    assert all(torch.equal(checkpoint[k], again[k]) for k in checkpoint)  # not re-run: continued after it
    last = max(int(p.name[11:17]) for p in (run / "checkpoints").iterdir() if p.suffix == ".safetensors")
    assert last == 5 and len(done) >= 2
    adapter = load_file(str(run / "policy" / "adapter_model.safetensors"))
    assert adapter and all(torch.isfinite(v).all() for v in adapter.values())

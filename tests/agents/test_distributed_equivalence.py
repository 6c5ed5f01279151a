"""Slow tier: the distributed logic on CPU, 2 gloo processes against 1.

- One GRPO update over 2 ranks, each holding half the groups, equals the update of 1 rank holding all of them
  (advantages, loss and gradients within float tolerance), for every ``loss_type`` and ``scale_rewards``, with and
  without groups filtered out (then the ranks hold different numbers of actions).
- A checkpoint written by 2 ranks resumes to the same weights and optimiser state.
- FSDP on gloo, wrapped with torch directly (accelerate 1.16 enables FSDP only for GPU backends, so its ``prepare``
  and ``save_state`` paths are not run here): generation under ``unwrap_for_generation`` equals generation of the
  unsharded model, and the loss's gradients equal the unsharded ones, under FSDP2 (``fully_shard``) for full
  fine-tuning and for LoRA with fp32 adapters on a bf16 base, and under FSDP1 (``summon_full_params(recurse=False)``)
  for full fine-tuning; FSDP1 refuses the LoRA layer's mixed dtypes, which is why ``fsdp.yaml`` uses FSDP2.

The test writes the tiny policy and the rollouts once, launches this file under ``torch.distributed.run`` and
compares what each rank wrote with the single-process computation.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

GROUP_SIZE, GROUPS, DECISIONS = 2, 4, 2
QUERIES = ["a red circle", "a blue square", "a green triangle", "a yellow circle"]
EPISODES = GROUP_SIZE * GROUPS
REWARDS = np.array([0.1, 0.9, 0.5, 0.5, 0.3, 0.2, 0.8, 0.0])  # group 1 has equal rewards (filtered out)
COMBOS = [
    {"loss_type": loss, "scale_rewards": scale, "filter_zero_std_groups": (i % 2 == 1)}
    for i, (loss, scale) in enumerate(itertools.product(("grpo", "dr_grpo", "dapo"), ("group", "batch", "none")))
]
COMBOS.append(
    {"loss_type": "dapo", "scale_rewards": "batch", "importance_sampling_level": "sequence", "delta": 2.0}
    | {"use_bias_correction_kl": True}
    | {"mask_truncated_completions": True, "filter_zero_std_groups": True}
)


# -- shared by the test and the workers ---------------------------------------------------------------------------


def _config(folder: Path, **overrides):
    from promptloop_agents.learners.grpo_config import GRPOConfig

    base = dict(output_dir=str(folder), max_steps=1, queries_per_iteration=GROUPS, group_size=GROUP_SIZE)
    base.update(learning_rate=1e-2, beta=0.04, micro_batch_size=3, progress=False, max_grad_norm=1e6)
    return GRPOConfig(**{**base, **overrides})


def _load_samples(path: Path, rows: slice):
    from PIL import Image

    from promptloop_agents.policies.mllm import PolicySample

    saved = torch.load(path, weights_only=True)
    return [
        PolicySample(
            d["texts"][rows],
            [Image.fromarray(a.numpy()) for a in d["images"][rows]],
            d["completions"][rows],
            d["prompts"][rows],
            d["malformed"][rows],
        )
        for d in saved
    ]


def _update(folder: Path, combo: dict, rows: slice, accelerator) -> dict:
    """One update of the saved policy on the episodes ``rows``: its advantages, loss and gradients."""
    from promptloop_agents.learners.grpo_trainer import GRPOTrainer
    from promptloop_agents.learners.objectives import zero_std_groups
    from promptloop_agents.policies.mllm import MLLMAgent

    policy = MLLMAgent.from_pretrained(folder / "policy", is_trainable=True)
    config = _config(folder / "run", **combo)
    envs = SimpleNamespace(num_envs=rows.stop - rows.start)
    trainer = GRPOTrainer(policy, config, envs, ["q"] * GROUPS, accelerator=accelerator)
    rewards = REWARDS[rows]
    advantages = trainer.advantages(rewards)
    keep = ~zero_std_groups(rewards, GROUP_SIZE) if config.filter_zero_std_groups else None
    grads = {}
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        named = trainer.policy.model.named_parameters()
        grads.update({n: p.grad.detach().clone() for n, p in named if p.grad is not None})
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    stats = trainer.update(_load_samples(folder / "samples.pt", rows), advantages, keep, np.random.default_rng(0))
    # (Weights after the step are not compared: AdamW's first step is g / (|g| + eps), which turns float noise in
    # gradients near eps into visible differences.)
    return {"advantages": torch.tensor(advantages), "loss": stats["loss"], "grads": grads}


# -- the workers (2 gloo processes) ---------------------------------------------------------------------------


def _worker(folder: Path) -> None:
    from accelerate import Accelerator

    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    per_rank = EPISODES // world
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    results = {"world": world, "updates": [_update(folder, combo, rows, accelerator) for combo in COMBOS]}
    results["resume"] = _checkpoint_round_trip(folder, rows, accelerator)
    cases = (("full", 2), ("lora-bf16", 2), ("full", 1))
    results["sharded"] = {
        f"{kind}-fsdp{version}": _sharded(folder, kind, version, accelerator) for kind, version in cases
    }
    results["fsdp1_lora_refused"] = _fsdp1_refuses_mixed_dtypes(folder)
    torch.save(results, folder / f"rank{rank}.pt")


def _checkpoint_round_trip(folder: Path, rows: slice, accelerator) -> dict:
    from promptloop_agents.learners.grpo_trainer import GRPOTrainer
    from promptloop_agents.policies.mllm import MLLMAgent

    config = _config(folder / "resume", save_every=1)
    envs = SimpleNamespace(num_envs=rows.stop - rows.start)
    policy = MLLMAgent.from_pretrained(folder / "policy", is_trainable=True)
    trainer = GRPOTrainer(policy, config, envs, ["q"] * GROUPS, accelerator=accelerator)
    samples = _load_samples(folder / "samples.pt", rows)
    trainer.update(samples, trainer.advantages(REWARDS[rows]), None, np.random.default_rng(0))
    trainer.iteration = 1
    trainer.save()
    again = GRPOTrainer(
        MLLMAgent.from_pretrained(folder / "policy", is_trainable=True),
        config,
        envs,
        ["q"] * GROUPS,
        accelerator=accelerator,
    )
    resumed = again.resume()
    same = [
        torch.equal(a, b)
        for (_, a), (_, b) in zip(
            trainer.policy.model.named_parameters(), again.policy.model.named_parameters(), strict=True
        )
    ]
    moments = trainer.optimizer.state_dict()["state"]
    loaded = again.optimizer.state_dict()["state"]
    return {
        "resumed": resumed,
        "iteration": again.iteration,
        "weights": all(same),
        "moments": len(moments) > 0 and all(torch.equal(moments[i]["exp_avg"], loaded[i]["exp_avg"]) for i in moments),
    }


def _policy(folder: Path, kind: str):
    from promptloop_agents.policies.mllm import MLLMAgent

    if kind == "full":
        return MLLMAgent.from_pretrained(folder / "full", torch_dtype=torch.float32)
    agent = MLLMAgent.from_pretrained(folder / "policy", is_trainable=True, torch_dtype=torch.bfloat16)
    for name, parameter in agent.model.named_parameters():
        if "lora_" in name:
            parameter.data = parameter.data.float()  # fp32 adapters on a bf16 base, as the trainer keeps them
    return agent


LAYERS = ("Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock")


def _fsdp1(model):
    import functools

    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

    policy = functools.partial(lambda_auto_wrap_policy, lambda_fn=lambda m: type(m).__name__ in LAYERS)
    return FullyShardedDataParallel(
        model, auto_wrap_policy=policy, use_orig_params=True, device_id=torch.device("cpu")
    )


def _fsdp1_refuses_mixed_dtypes(folder: Path) -> str:
    """What FSDP1 says to a LoRA layer (fp32 adapters on bf16 weights): why ``fsdp.yaml`` uses FSDP2."""
    try:
        _fsdp1(_policy(folder, "lora-bf16").model)
    except ValueError as err:
        return str(err)
    return ""


def _sharded(folder: Path, kind: str, version: int, accelerator) -> dict:
    """Generation and gradients of a sharded policy (FSDP2's ``fully_shard`` or FSDP1) against the same policy
    unsharded, on this rank."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard

    from promptloop_agents.learners.distributed import fsdp_version, unwrap_for_generation

    samples = _load_samples(folder / "samples.pt", slice(0, 4))
    rank = accelerator.process_index
    saved = torch.load(folder / "samples.pt", weights_only=True)[0]
    observations = [  # rank-specific observations: the ranks' answers differ in length (synced generation)
        {"image": saved["images"][i].numpy(), "query": QUERIES[i // 2], "prompt": "p", "timestep": 0.0, "segment": 0}
        for i in range(2 * rank, 2 * rank + 2)
    ]
    plain, sharded = _policy(folder, kind), _policy(folder, kind)
    if version == 2:
        mesh = init_device_mesh("cpu", (accelerator.num_processes,))
        for module in sharded.model.modules():
            if type(module).__name__ in LAYERS:
                fully_shard(module, mesh=mesh)
        fully_shard(sharded.model, mesh=mesh)
    else:
        sharded.model = _fsdp1(sharded.model)
    torch.manual_seed(7)
    expected = plain.sample(observations)
    torch.manual_seed(7)
    with unwrap_for_generation(sharded.model, accelerator) as generator:
        got = sharded.sample(observations, model=generator)
    batch = plain.collate([(samples[0], row) for row in range(4)])
    trainable = [n for n, p in plain.model.named_parameters() if p.requires_grad]
    grads = {}
    for name, agent in (("plain", plain), ("sharded", sharded)):
        agent.model.train()
        logps = agent.logps(agent.model, agent.collate([(samples[0], row) for row in range(4)]))
        (logps.sum() / batch.completion_mask.sum()).backward()
        if version == 1 and name == "sharded":
            with FullyShardedDataParallel.summon_full_params(agent.model, with_grads=True):
                named = {n.replace("_fsdp_wrapped_module.", ""): p for n, p in agent.model.named_parameters()}
                grads[name] = {n: named[n].grad.clone().float() for n in trainable}
            continue
        named = dict(agent.model.named_parameters())
        grads[name] = {
            n: (named[n].grad.full_tensor() if hasattr(named[n].grad, "full_tensor") else named[n].grad).float()
            for n in trainable
        }
    return {
        "version": fsdp_version(sharded.model),
        "same_answers": all(torch.equal(a, b) for a, b in zip(expected.completions, got.completions, strict=True)),
        "grad_max_diff": max(float((grads["plain"][n] - grads["sharded"][n]).abs().max()) for n in trainable),
        "grad_scale": max(float(grads["plain"][n].abs().max()) for n in trainable),
    }


# -- the test -------------------------------------------------------------------------------------------------


def _prepare(folder: Path) -> None:
    """The tiny policy (LoRA with non-zero B, so that the KL term has gradients; and a full copy) and rollouts."""
    from promptloop_agents.policies.toy_policy import build_toy_policy, world_words

    agent = build_toy_policy("tiny", words=world_words(), max_new_tokens=5, seed=0)
    agent.save_pretrained(folder / "full")
    agent.add_lora(r=4, alpha=8, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in agent.model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    agent.save_pretrained(folder / "policy")
    rng = np.random.default_rng(0)
    decisions = []
    for segment in range(DECISIONS):
        observations = [
            {"image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "query": QUERIES[i // 2], "prompt": "p"}
            | {"timestep": segment / DECISIONS, "segment": segment}
            for i in range(EPISODES)
        ]
        torch.manual_seed(segment)
        sample = agent.sample(observations)
        decisions.append(
            {
                "texts": sample.texts,
                "images": torch.from_numpy(np.stack([np.asarray(im) for im in sample.images])),
                "completions": sample.completions,
                "prompts": sample.prompts,
                "malformed": sample.malformed,
            }
        )
    torch.save(decisions, folder / "samples.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_with_half_the_groups_each_make_the_update_of_one_rank_with_all(tmp_path):
    from promptloop_agents.learners.distributed import make_accelerator

    _prepare(tmp_path)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), *(p for p in sys.path if p)])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
    command += [str(_free_port()), __file__, str(tmp_path)]
    done = subprocess.run(command, env=env, timeout=900, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]

    accelerator = make_accelerator()
    for index, combo in enumerate(COMBOS):
        single = _single(tmp_path, combo, accelerator)
        two = [r["updates"][index] for r in ranks]
        advantages = torch.cat([two[0]["advantages"], two[1]["advantages"]])
        assert torch.allclose(advantages, single["advantages"], atol=1e-9), combo
        assert two[0]["loss"] == pytest.approx(single["loss"], rel=1e-5, abs=1e-7), combo
        assert set(two[0]["grads"]) == set(single["grads"]) and single["grads"]
        scale = max(float(g.abs().max()) for g in single["grads"].values())
        for name, grad in single["grads"].items():
            for rank in two:
                assert torch.allclose(rank["grads"][name], grad, atol=1e-5 * scale, rtol=1e-4), (combo, name)
    for rank in ranks:
        assert rank["resume"] == {"resumed": True, "iteration": 1, "weights": True, "moments": True}
    for rank in ranks:
        for case, result in rank["sharded"].items():
            assert case.endswith(f"fsdp{result['version']}") and result["same_answers"], case
            assert result["grad_max_diff"] <= 1e-5 * max(result["grad_scale"], 1.0), (case, result)
        assert "uniform" in rank["fsdp1_lora_refused"]  # FSDP1 cannot flatten fp32 adapters with bf16 weights


def _single(folder: Path, combo: dict, accelerator) -> dict:
    """The single-process update on all the groups (the run folder of its own)."""
    import shutil

    single = folder / "single"
    if not single.exists():
        single.mkdir()
        for name in ("policy", "samples.pt"):
            source = folder / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, single / name)
    return _update(single, combo, slice(0, EPISODES), accelerator)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))

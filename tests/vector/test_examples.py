"""Smoke tests of the integration examples, each on a tiny budget (the full runs are in the examples' docstrings)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_sb3_ppo_discrete_runs(tmp_path):
    pytest.importorskip("stable_baselines3")
    example = load_example("sb3_ppo_discrete")
    output = tmp_path / "sb3.json"
    args = example.Args(
        num_inference_steps=4,
        preview_size=36,
        num_envs=2,
        total_timesteps=16,
        n_steps=8,
        eval_episodes=3,
        throughput_episodes=2,
        output=str(output),
    )
    result = example.main(args)
    assert all(math.isfinite(result[key]) for key in ("ppo", "random_arm", "identity"))
    assert sum(result["ppo_choices"].values()) == 3 and result["throughput"]["speedup"] > 0
    assert json.loads(output.read_text())["summary"]["ppo"]["mean"] == round(result["ppo"], 4)


def test_trl_grpo_environment_runs(tmp_path):
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    example = load_example("trl_grpo_environment")
    args = example.Args(
        num_inference_steps=4,
        sft_steps=80,  # enough for the policy to write the tool-call JSON (about 20 s)
        sft_batch_size=4,
        sft_episodes=1,
        max_steps=2,
        steps_per_epoch=1,
        num_generations=2,
        queries_per_step=1,
        eval_rows=2,
        eval_generations=2,
        output=str(tmp_path / "trl.json"),
        curve=str(tmp_path / "curve.png"),
    )
    env = example.PromptLoopToolEnv(args, log=[])
    content = env.reset(seed=0, query="a blue square", row=7)
    assert [part["type"] for part in content] == ["image", "text"] and content[0]["image"].size == (56, 56)
    assert "User request: a blue square" in content[1]["text"]
    assert [part["type"] for part in env.set_prompt("{query}, large, bright")] == ["image", "text"]
    assert env.prompt == "a blue square, large, bright"  # the policy may write {query} for the request
    assert 0.0 <= env.get_reward() <= 1.0  # the env runs the unfinished episode to its end
    assert env.log == [
        {
            "row": 7,
            "reward": env.reward,
            "calls": 1,
            "prompt": "a blue square, large, bright",
            "query": "a blue square",
        }
    ]
    assert example.prompt_shares(env.log)["{query}, large, bright"] == 1.0
    result = example.main(args)
    assert len(result["step_means"]) == 2 and all(math.isfinite(m) for m in result["step_means"])
    assert result["last_minus_first"]["n"] == 1 and (tmp_path / "curve.png").stat().st_size > 0
    held_out = result["held_out"]  # the same 2 held-out rows, 2 rollouts each, before and after GRPO
    assert held_out["rollouts"] == [4, 4] and held_out["after_minus_before"]["n"] == 2
    # The warm-started policy calls set_prompt, so its rollouts are scored by the env (not the no-call reward).
    assert max(result["calls_per_rollout_by_block"]) > 0 and max(held_out["calls_per_rollout"]) > 0
    assert all(math.isclose(sum(shares.values()), 1.0, abs_tol=0.01) for shares in held_out["prompt_shares"])
    assert json.loads((tmp_path / "trl.json").read_text())["step_means"] == result["step_means"]


def test_trl_warm_start_labels_only_the_assistant_turns():
    pytest.importorskip("trl")
    example = load_example("trl_grpo_environment")
    processor = example.build_processor(example.Args())
    call = {"type": "function", "function": {"name": "set_prompt", "arguments": {"prompt": "a blue square"}}}
    messages = [
        {"role": "user", "content": "make it"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "done"},
        {"role": "assistant", "content": "Done."},
    ]
    text = processor.apply_chat_template(messages, tools=[example.PromptLoopToolEnv.set_prompt], tokenize=False)
    ids = processor.tokenizer(text, return_tensors="pt")["input_ids"]
    labels = example.assistant_labels(ids, processor.tokenizer)
    learned = processor.tokenizer.decode(labels[labels != -100])
    assert learned.count("<|im_end|>") == 2 and '"prompt": "a blue square"' in learned and "Done." in learned
    assert "make it" not in learned and "set_prompt(" not in learned and "done<" not in learned


def test_torchrl_gymenv_runs():
    pytest.importorskip("torchrl")
    example = load_example("torchrl_gymenv")
    result = example.main(example.Args(num_inference_steps=4))
    assert all(math.isfinite(value) for value in result.values())


def test_grpo_mllm_policy_runs_from_its_command_line(tmp_path):
    pytest.importorskip("peft")
    example = load_example("grpo_mllm_policy")
    # One GRPO iteration whatever the iteration flag is called: max_train_seconds stops after the first.
    argv = "--backbone tiny --max_train_seconds 0.001 --queries_per_iteration 1 --group_size 2 --warm_start_steps 2"
    argv += f" --num_inference_steps 2 --num_refinements 1 --eval_episodes 2 --progress false --output_dir {tmp_path}"
    summaries = example.main(argv.split())
    assert set(summaries) == {"identity", "policy"}
    assert all(s["jpeg-incompressibility"]["n"] == 2 for s in summaries.values())


def test_rollout_filmstrip_writes_its_picture(tmp_path):
    example = load_example("rollout_filmstrip")
    args = example.Args(out=str(tmp_path), agent="rule", num_inference_steps=4, refine_schedule="0,2")
    summary = example.main(args)
    assert len(summary["prompts"]) == 2 and summary["prompts"][1].endswith(", bright")
    assert (tmp_path / "filmstrip.png").stat().st_size > 0


def test_examples_default_to_a_trained_toy_world_and_write_under_runs():
    """A new user's first run: trained weights and the world's own reward, outputs under runs/, never into the
    shipped benchmarks/results; the run command at the top of each example."""
    for name in (
        "rollout_filmstrip",
        "torchrl_gymenv",
        "grpo_mllm_policy",
        "sb3_ppo_discrete",
        "trl_grpo_environment",
    ):
        text = (EXAMPLES / f"{name}.py").read_text()
        head = text.split("\n\n")[1]
        assert head.startswith("Run: ``python examples/"), name
        assert "benchmarks/results" not in head, name
        defaults = {f.name: f.default for f in __import__("dataclasses").fields(load_example(name).Args)}
        assert defaults.get("backbone", "toy-shapes") in ("toy-compose", "toy-shapes"), name
        assert defaults.get("reward") in (None, "toy-compose-soft", "toy-fidelity"), name
        for key in ("out", "output", "curve"):
            assert str(defaults.get(key) or "runs/").startswith("runs/"), (name, key)
    assert load_example("rollout_filmstrip").Args().agent == "policy"  # the shipped policy, not a fixed rule


@pytest.mark.slow
def test_sb3_ppo_discrete_learns_which_prompt_pays(tmp_path):
    """The example's full budget on the batched env: PPO beats random arms on held-out queries (a few minutes)."""
    pytest.importorskip("stable_baselines3")
    example = load_example("sb3_ppo_discrete")
    result = example.main(example.Args(throughput_episodes=0))
    assert result["ppo_minus_random"]["ci_low"] > 0 and result["ppo_minus_identity"]["ci_low"] > 0

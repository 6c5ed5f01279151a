"""Watching a run: sampled prompts with previews every N iterations, and the held-out over-optimisation monitor."""

import json

import pytest

from promptloop_agents.learners.distributed import resolve_trackers
from promptloop_agents.learners.grpo_config import GRPOConfig
from promptloop_agents.learners.grpo_trainer import GRPOTrainer
from promptloop_agents.rollout import make_vector_env


def test_samples_and_held_out_monitor_are_logged(policy, envs, queries, env_kwargs, tmp_path):
    config = GRPOConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        queries_per_iteration=2,
        group_size=2,
        progress=False,
        lora_r=4,
        lora_alpha=8,
        same_noise=True,
        filter_zero_std_groups=True,
        log_samples_every=2,
        eval_every=2,
        eval_prompts="toy-user-test",
        eval_metrics="jpeg-incompressibility,jpeg-compressibility",
        eval_queries=2,
    )
    eval_envs = make_vector_env(2, refine_schedule="uniform", **env_kwargs)
    history = GRPOTrainer(policy, config, envs, queries, eval_envs=eval_envs).train()
    eval_envs.close()
    assert "eval/jpeg-compressibility" in history[1] and "eval/jpeg-compressibility" not in history[0]
    rows = json.loads((tmp_path / "run" / "samples" / "iteration-000002.json").read_text())
    assert rows and len(rows[0]["prompts"]) == env_kwargs["num_refinements"]
    assert rows[0]["seed"] == rows[1]["seed"] != rows[2]["seed"]  # same_noise: one env seed per group
    assert (tmp_path / "run" / "samples" / "iteration-000002.png").stat().st_size > 0
    assert {"entropy", "learning_rate", "clip_ratio/high", "zero_std_group_fraction"} <= set(history[0])


def test_trackers_are_named_or_refused():
    assert resolve_trackers("") == []
    with pytest.raises(ValueError, match="Unknown tracker"):
        resolve_trackers("tensorbored")

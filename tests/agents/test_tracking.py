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


def test_tracking_imports_neither_the_harness_nor_the_cli():
    """The held-out evaluation reaches tracking as a callback (no import cycle through the CLI)."""
    import subprocess
    import sys

    code = (
        "import sys, promptloop_agents.learners.tracking, promptloop_agents.learners.grpo_trainer\n"
        "bad = [m for m in sys.modules if m.startswith(('promptloop_agents.cli', 'promptloop_agents.evaluation'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_held_out_episodes_are_split_evenly_across_ranks():
    from promptloop_agents.learners.held_out import HeldOutMonitor

    monitor = HeldOutMonitor(None, list("abcde"), range(5), None)
    shards = [monitor.shard(rank, 2) for rank in (0, 1)]
    assert shards == [[0, 2, 4], [1, 3, 3]] and set(shards[0] + shards[1]) == set(range(5))
    with pytest.raises(RuntimeError, match="main process"):
        monitor.score({0: None})

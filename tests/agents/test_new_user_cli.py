"""What tripped a new user on the command line (issue 26), walked through and checked fixed.

Each test names the stumble: sampled evaluation by default, defaults that did not work together, the first N
queries instead of a draw across categories, noisy output, tracebacks for errors, help texts that repeated or
misnamed options, pictures without labels, a wall-clock demo budget, a silent end of ``promptloop train``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from promptloop_agents.cli.demo import DemoConfig, demo_configs
from promptloop_agents.cli.main import WORLD_DEFAULTS, build_parser, main, parse_args
from promptloop_agents.configs import EnvConfig, read_config_file
from promptloop_agents.evaluation.agents import EVAL_AGENTS, load_policies, parse_agent_specs, sampling_description
from promptloop_agents.evaluation.eval_config import EvalConfig
from promptloop_agents.evaluation.plots import prompt_change
from promptloop_agents.evaluation.suite import eval_queries
from promptloop_agents.policies.policy_config import PolicyConfig
from promptloop_agents.policies.processing import preview_to_pil
from promptloop_agents.policies.toy_policy import SHIPPED_POLICIES, SHIPPED_TOY_COMPOSE_POLICY

ROOT = Path(__file__).resolve().parents[2]


def cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``promptloop ARGS`` in a fresh process (library notes are printed once per process, so only a fresh one
    shows what a user sees)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "promptloop_agents.cli", *argv]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd or ROOT, timeout=600)


def help_of(command: str, flag: str) -> str:
    """The help text of ``flag`` in ``promptloop COMMAND``."""
    parser = build_parser().subcommands[command]
    action = next(a for a in parser._actions if flag in a.option_strings)
    return action.help


def test_help_is_quiet_and_says_what_each_option_does():
    run = cli("eval", "--help")  # builds every command's parser, as `promptloop --help` does
    assert run.returncode == 0 and run.stderr == "", run.stderr  # no torchvision notes, no loading bars
    text = re.sub(r"-\s+", "-", " ".join(run.stdout.split()))  # argparse wraps lines at hyphens
    for name in EVAL_AGENTS:  # one-shot and teacher included
        assert f"{name}:" in text, name
    assert {"one-shot", "teacher"} <= set(EVAL_AGENTS)
    assert "Training reward" not in help_of("eval", "--reward")
    for command, flag in (("eval", "progress"), ("train", "resume"), ("train", "progress"), ("demo", "progress")):
        negative = help_of(command, f"--no_{flag}")
        assert negative != help_of(command, f"--{flag}") and negative.startswith(f"Turn --{flag} off")


def test_bare_eval_runs_the_toy_compose_world_greedily_across_categories(tmp_path):
    run = cli("eval", "--max-queries", "3", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "torchvision" not in run.stderr and "Loading pipeline" not in run.stderr
    report = json.loads((tmp_path / "runs" / "eval" / "eval.json").read_text())
    assert report["setup"]["backbone"] == "toy-compose" and report["setup"]["eval_prompts"] == "toy-compose-test"
    assert list(report["backbones"]["toy-compose"]["agents"]) == ["identity", "one-shot", "policy"]
    assert report["sampling"]["policy"] == "greedy" and report["sampling"]["one-shot"] == "deterministic"
    assert len(set(report["categories"])) == 3  # three queries of three categories, not 'a circle' three times
    assert "| greedy |" in (tmp_path / "runs" / "eval" / "eval.md").read_text()
    columns = report["backbones"]["toy-compose"]["samples"]["columns"]
    assert [q for q, _ in columns] == report["queries"]  # the sample grid's columns are the queries


def test_sampling_is_opt_in_and_keeps_the_policys_saved_temperature():
    (spec,) = parse_agent_specs("policy", str(SHIPPED_TOY_COMPOSE_POLICY))
    saved = json.loads((SHIPPED_TOY_COMPOSE_POLICY / "promptloop_agent.json").read_text())["temperature"]
    greedy = load_policies([spec], PolicyConfig(), "cpu")[spec.policy_path]
    assert sampling_description(greedy) == "greedy"
    sampled = load_policies([spec], PolicyConfig(do_sample=True), "cpu")[spec.policy_path]
    assert sampled.temperature == saved and sampling_description(sampled) == f"sampled at temperature {saved:g}"
    hotter = load_policies([spec], PolicyConfig(do_sample=True, temperature=1.7), "cpu")[spec.policy_path]
    assert hotter.temperature == 1.7
    args = parse_args(["eval"])
    assert (args.do_sample, args.temperature) == (False, None)
    assert parse_args(["eval", "--do-sample"]).do_sample is True


def test_defaults_agree_with_the_toy_compose_world_and_a_toy_backbone_brings_its_own():
    recipe = read_config_file(ROOT / "recipes" / "toy-compose.yaml", ("env", "policy", "grpo"))
    train = parse_args(["train"])
    assert {key: getattr(train, key) for key in recipe} == recipe  # bare train = the recipe
    assert set(WORLD_DEFAULTS["toy-compose"]["train"]) - set(recipe) <= {"eval_prompts", "eval_metrics"}
    shapes = parse_args(["eval", "--backbone", "toy-shapes"])
    assert (shapes.reward, shapes.eval_prompts, shapes.metrics) == (
        "toy-fidelity",
        "toy-user-test",
        "toy-fidelity,toy-aesthetic",
    )
    assert parse_args(["eval", "--backbone", "toy-shapes", "--metrics", "toy-aesthetic"]).metrics == "toy-aesthetic"
    assert parse_args(["train", "--backbone", "toy-shapes"]).train_prompts == "toy-user-train"
    # Another backbone gets the config classes' defaults, not the toy-compose recipe's.
    sd15 = parse_args(["train", "--backbone", "sd15", "--reward", "imagereward"])
    assert (sd15.same_noise, sd15.refine_schedule, sd15.toy_size) == (False, "random", "small")
    assert parse_args(["eval", "--backbone", "sd15"]).refine_schedule == "uniform"


def test_one_preview_size_and_the_shipped_policies_still_see_64_pixels():
    from promptloop_env.config import PromptLoopConfig

    env_default = PromptLoopConfig().preview_size
    assert EnvConfig().preview_size == env_default == parse_args(["eval"]).preview_size
    for folder in SHIPPED_POLICIES.values():
        assert json.loads((folder / "promptloop_agent.json").read_text())["preview_size"] == 64
    preview = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    shrunk = np.asarray(Image.fromarray(preview).resize((64, 64), Image.BOX))
    np.testing.assert_array_equal(
        np.asarray(preview_to_pil(preview, 112, 160.0, trained_size=64)),
        np.asarray(preview_to_pil(shrunk, 112, 160.0)),
    )


def test_max_queries_draws_across_the_categories_seeded():
    config = EvalConfig(max_queries=6, seed=3)
    queries, categories = eval_queries(config, "toy-compose")
    assert len(set(categories)) == 6 and len(set(queries)) == 6
    assert eval_queries(config, "toy-compose") == (queries, categories)  # the same seed, the same draw
    everything, _ = eval_queries(EvalConfig(), "toy-compose")
    assert len(everything) == 120


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--agents", "identity,nope"], "Unknown agent 'nope'"),
        (["eval", "--agents", "identity", "--metrics", "nope"], "Unknown reward 'nope'"),
        (["eval", "--agents", "identity", "--eval-prompts", "nope"], "Unknown prompt set 'nope'"),
        (["eval", "--agents", "policy", "--policy", "./no/such/policy"], "'./no/such/policy' (--policy) not found"),
        (["eval", "--seeds-per-query", "0"], "--seeds-per-query must be an integer >= 1"),
        (["eval", "--num-envs", "many"], "invalid int value: 'many'"),
        (["train", "--config", "no-such-recipe.yaml"], "no-such-recipe.yaml: not found"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--output-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error and "Traceback" not in error
    assert error.startswith(f"promptloop {argv[0]}: error:")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="Unknown agent 'nope'"):
        main(["eval", "--agents", "nope", "--output-dir", str(tmp_path), "--debug"])


def test_missing_reward_weights_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    argv = ["eval", "--agents", "identity", "--metrics", "imagereward", "--max-queries", "1"]
    assert main([*argv, "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("promptloop eval: error:") and "weights" in error and "\n" not in error


def test_train_says_where_the_policy_is_and_a_refused_resume_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--backbone", "tiny", "--reward", "jpeg-incompressibility", "--num-inference-steps", "2"]
    argv += ["--num-refinements", "1", "--preview-size", "32", "--refine-schedule", "uniform", "--toy-size", "tiny"]
    argv += ["--warm-start-from", "", "--train-prompts", "toy-user-train", "--warm-start-episodes", "2"]
    argv += ["--warm-start-steps", "1", "--max-steps", "1", "--queries-per-iteration", "1", "--group-size", "2"]
    argv += ["--max-new-tokens", "4", "--micro-batch-size", "2", "--output-dir", str(run), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"Policy saved in {run.as_posix()}/policy" in out
    assert f"promptloop eval --config {run.as_posix()}/config.yaml --policy {run.as_posix()}/policy" in out
    assert (run / "policy").is_dir()
    assert main([*argv, "--beta", "0.5", "--max-steps", "2"]) == 2  # the experiment changed: resuming is refused
    error = capsys.readouterr().err.strip()
    assert error.startswith("promptloop train: error:") and "\n" not in error and "beta" in error


def test_the_demo_budget_is_iterations_not_seconds():
    fields = {f.name for f in dataclasses.fields(DemoConfig)}
    assert "max_train_seconds" not in fields and isinstance(DemoConfig().max_steps, int)
    _, _, grpo, evaluation = demo_configs(DemoConfig())
    assert grpo.max_train_seconds == 0 and grpo.max_steps == DemoConfig().max_steps
    assert evaluation.eval_prompts == "toy-compose-test"


def test_pictures_say_what_changed():
    assert prompt_change("a red circle", "a red circle") == "kept the prompt"
    assert prompt_change("two circles", "three circles, left") == "added 'three', 'left'; removed 'two'"

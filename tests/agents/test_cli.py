import dataclasses
import json

import pytest

from promptloop_agents.cli.demo import DemoConfig
from promptloop_agents.cli.main import build_parser, main
from promptloop_agents.configs import EnvConfig, parse_reward
from promptloop_agents.evaluation.eval_config import EvalConfig
from promptloop_agents.learners.grpo_config import GRPOConfig
from promptloop_agents.policies.policy_config import PolicyConfig


@pytest.mark.parametrize(
    ("command", "configs"),
    [
        ("train", (EnvConfig, PolicyConfig, GRPOConfig)),
        ("eval", (EnvConfig, PolicyConfig, EvalConfig)),
        ("demo", (DemoConfig,)),
    ],
)
def test_every_option_has_help(command, configs, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    for config in configs:
        for field in dataclasses.fields(config):
            assert "--" + field.name.replace("_", "-") in text
            assert field.metadata["help"]


def test_weighted_reward_specs():
    assert parse_reward("toy-fidelity") == "toy-fidelity"
    assert parse_reward("toy-fidelity:1, toy-aesthetic:0.5") == {"toy-fidelity": 1.0, "toy-aesthetic": 0.5}


def test_train_then_eval_from_the_command_line(tmp_path):
    env = ["--backbone", "tiny", "--reward", "toy-fidelity", "--num-inference-steps", "4", "--num-refinements", "2"]
    env += ["--preview-size", "32", "--refine-schedule", "uniform"]
    run = tmp_path / "run"
    main(
        [
            "train",
            *env,
            "--output-dir",
            str(run),
            "--toy-size",
            "tiny",
            "--warm-start-from",
            "",
            "--train-prompts",
            "toy-user-train",
            "--warm-start-episodes",
            "4",
            "--warm-start-steps",
            "3",
            "--max-steps",
            "2",
            "--queries-per-iteration",
            "2",
            "--group-size",
            "2",
            "--progress",
            "false",
            "--max-new-tokens",
            "6",
        ]
    )
    assert {"config.yaml", "metrics.jsonl", "checkpoints", "policy", "warm_start", "reward_curve.png"} <= {
        p.name for p in run.iterdir()
    }
    main(
        [
            "eval",
            *env,
            "--policy",
            str(run / "policy"),
            "--output-dir",
            str(tmp_path / "eval"),
            "--max-queries",
            "4",
            "--seeds-per-query",
            "1",
            "--num-envs",
            "4",
            "--agents",
            "identity,static,random,policy",
            "--eval-prompts",
            "toy-user-test",
            "--metrics",
            "toy-fidelity,toy-aesthetic",
            "--progress",
            "false",
        ]
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["agents"]) == {"identity", "static", "random", "policy"}
    assert {"mean", "ci_low", "ci_high"} <= set(metrics["agents"]["policy"]["toy-fidelity"])

"""promptloop_env.cli: dataclasses to flags on HfArgumentParser, config files, overrides and errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from promptloop_env.cli import parse_config, parse_configs, read_config_file


@dataclass
class EnvArgs:
    """Which env."""

    backbone: str = field(default="toy-shapes", metadata={"help": "backbone name"})
    num_inference_steps: int = field(default=20, metadata={"help": "denoising steps"})
    guidance_scale: float | None = field(default=None, metadata={"help": "CFG scale; default: the backbone's"})


@dataclass
class TrainArgs:
    """How to train."""

    learning_rate: float = field(default=1e-3, metadata={"help": "learning rate"})
    progress: bool = field(default=True, metadata={"help": "progress bars"})
    resume: bool = field(default=False, metadata={"help": "resume"})


def test_defaults_underscore_and_dash_flags():
    assert parse_config(EnvArgs, []) == EnvArgs()
    env = parse_config(EnvArgs, ["--num_inference_steps", "8", "--guidance-scale", "7.5"])
    assert env == EnvArgs(num_inference_steps=8, guidance_scale=7.5)
    assert parse_config(EnvArgs, ["--num-inference-steps", "4"]).num_inference_steps == 4


@pytest.mark.parametrize(
    ("argv", "progress", "resume"),
    [
        ([], True, False),
        (["--no_progress", "--resume"], False, True),
        (["--progress", "false", "--resume", "yes"], False, True),
    ],
)
def test_booleans(argv, progress, resume):
    train = parse_config(TrainArgs, argv)
    assert (train.progress, train.resume) == (progress, resume)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_then_flags(tmp_path, suffix):
    values = {
        "env": {"backbone": "tiny", "num_inference_steps": 8},
        "train": {"learning_rate": 0.01, "progress": False},
    }
    path = tmp_path / f"run{suffix}"
    path.write_text(json.dumps(values))  # JSON is YAML too
    env, train = parse_configs([EnvArgs, TrainArgs], ["--config", str(path), "--num-inference-steps", "4"])
    assert env == EnvArgs(backbone="tiny", num_inference_steps=4)
    assert train == TrainArgs(learning_rate=0.01, progress=False)
    assert read_config_file(path)["train"]["learning_rate"] == 0.01


def test_flat_yaml_and_strings_converted(tmp_path):
    path = tmp_path / "run.yml"
    path.write_text("learning_rate: 1e-4\nresume: true\n")  # YAML 1.1 reads 1e-4 as a string; argparse converts it
    assert parse_config(TrainArgs, ["--config", str(path)]) == TrainArgs(learning_rate=1e-4, resume=True)


def test_errors_exit_with_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(EnvArgs, ["--num_iterations", "5"])
    assert info.value.code == 2 and "unrecognized arguments: --num_iterations 5" in capsys.readouterr().err
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"backbone": "tiny", "lr": 1}))
    with pytest.raises(SystemExit):
        parse_config(EnvArgs, ["--config", str(path)])
    assert "unknown fields ['lr']" in capsys.readouterr().err
    path.write_text(json.dumps({"a": {"backbone": "x"}, "b": {"backbone": "y"}}))
    with pytest.raises(SystemExit):
        parse_config(EnvArgs, ["--config", str(path)])
    assert "'backbone' is set twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(EnvArgs, ["--config", str(tmp_path / "missing.yaml")])


def test_help_lists_fields_with_defaults(capsys):
    with pytest.raises(SystemExit):
        parse_configs([EnvArgs, TrainArgs], ["--help"], description="A run.", prog="promptloop train")
    out = capsys.readouterr().out
    assert "usage: promptloop train" in out and "--config FILE" in out
    assert "denoising steps (default: 20)" in out and "--no_progress" in out


def test_named_sections_of_other_commands_are_skipped(tmp_path, capsys):
    sections = {"env": EnvArgs, "train": TrainArgs}
    path = tmp_path / "recipe.yaml"
    path.write_text("env:\n  backbone: tiny\ntrain:\n  learning_rate: 0.5\n")
    assert parse_config(EnvArgs, ["--config", str(path)], sections=sections) == EnvArgs(backbone="tiny")
    path.write_text("env:\n  learning_rate: 0.5\n")
    with pytest.raises(SystemExit):
        parse_config(EnvArgs, ["--config", str(path)], sections=sections)
    assert "section 'env' sets unknown fields ['learning_rate']" in capsys.readouterr().err
    path.write_text("grpo:\n  beta: 0.1\n")
    with pytest.raises(SystemExit):
        parse_config(EnvArgs, ["--config", str(path)], sections=sections)
    assert "unknown section 'grpo'" in capsys.readouterr().err


@dataclass
class EvalArgs:
    """Shares ``device`` and ``refine_schedule`` with the env section."""

    device: str = field(default="auto", metadata={"help": "process device"})
    refine_schedule: str = field(default="uniform", metadata={"help": "schedule"})


def test_a_field_shared_by_two_sections_is_one_option_that_sets_both():
    from promptloop_agents.configs import EnvConfig

    env, evaluation = parse_configs([EnvConfig, EvalArgs], [])
    assert (env.device, env.refine_schedule) == (None, None)  # each keeps its own default
    assert (evaluation.device, evaluation.refine_schedule) == ("auto", "uniform")
    env, evaluation = parse_configs([EnvConfig, EvalArgs], ["--device", "cpu", "--refine_schedule", "0,5"])
    assert (env.device, env.refine_schedule, evaluation.device, evaluation.refine_schedule) == ("cpu", "0,5") * 2


def test_old_env_names_in_a_config_file_are_read_with_a_warning(tmp_path):
    from promptloop_agents.configs import EnvConfig

    path = tmp_path / "recipe.yaml"
    path.write_text("env:\n  backbone_device: cpu\n  backbone_dtype: float16\n")
    with pytest.warns(FutureWarning) as record:
        (env,) = parse_configs([EnvConfig], ["--config", str(path)])
    assert any("'backbone_dtype' is now called 'torch_dtype'" in str(w.message) for w in record)
    assert (env.device, env.torch_dtype) == ("cpu", "float16")


def test_the_cli_env_section_is_derived_from_the_env_config():
    import dataclasses

    from promptloop_agents.configs import EnvConfig
    from promptloop_env.config import PromptLoopConfig

    env_fields = {f.name: f for f in dataclasses.fields(PromptLoopConfig)}
    for f in dataclasses.fields(EnvConfig):
        if f.name in env_fields:
            assert f.metadata["help"].startswith(env_fields[f.name].metadata["help"])
    assert EnvConfig().preview_size == PromptLoopConfig().preview_size == 256  # one default
    assert EnvConfig().backbone == "toy-compose" and EnvConfig().reward is None  # the world's own reward
    kwargs = EnvConfig(torch_dtype="bf16", device="auto").env_kwargs("random", "cpu")
    assert kwargs["refine_schedule"] == "random" and kwargs["device"] == "cpu" and kwargs["reward"] is None
    assert str(kwargs["torch_dtype"]) == "torch.bfloat16"
    assert EnvConfig(refine_schedule="0,9").env_kwargs("random")["refine_schedule"] == "0,9"  # the env's wins
    PromptLoopConfig.from_kwargs(**{k: v for k, v in kwargs.items() if k != "backbone"})  # valid env arguments

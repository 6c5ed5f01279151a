"""Recipes as config files: every recipe loads, flags override it, a saved config reads back, resume checks it."""

import dataclasses
from pathlib import Path

import gymnasium as gym
import pytest

from promptloop_agents.cli.demo import DemoConfig, demo_configs
from promptloop_agents.cli.main import parse_args
from promptloop_agents.configs import (
    EnvConfig,
    config_dict,
    config_from_args,
    config_sections,
    read_config_file,
    save_config,
)
from promptloop_agents.learners.grpo_config import GRPOConfig
from promptloop_agents.learners.grpo_trainer import GRPOTrainer
from promptloop_agents.policies.policy_config import PolicyConfig
from promptloop_agents.rollout import make_vector_env

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize(
    "name", ["toy", "toy-compose", "paper-sd15-imagereward", "sdxl-imagereward", "flux-schnell-pickscore"]
)
def test_every_recipe_builds_its_configs_and_states_its_hardware(name):
    path = RECIPES / f"{name}.yaml"
    text = path.read_text()
    assert "Expects:" in text or "Hardware:" in text  # GPU count and memory, with the arithmetic
    args = parse_args(["train", "--config", str(path)])
    configs = [config_from_args(config_sections()[s], args) for s in ("env", "policy", "grpo")]
    assert configs[2].max_steps >= 1 and configs[0].num_refinements >= 1


def test_the_toy_compose_recipe_is_the_demos_training_run_without_its_time_limit():
    env, policy, grpo, _ = demo_configs(DemoConfig())
    demo = config_dict(env=env, policy=policy, grpo=grpo)
    recipe = read_config_file(RECIPES / "toy-compose.yaml", ("env", "policy", "grpo"))
    budget = {"max_steps", "max_train_seconds", "queries_per_iteration", "micro_batch_size"}  # the demo's is 10 min
    for key, value in recipe.items():
        section = next(s for s in ("env", "policy", "grpo") if key in demo[s])
        if key not in budget:
            assert demo[section][key] == value, key


def test_flags_override_the_file_and_a_saved_config_reads_back(tmp_path):
    recipe = str(RECIPES / "paper-sd15-imagereward.yaml")
    args = parse_args(["train", "--config", recipe, "--beta", "0", "--lora_r", "4"])
    env, policy, grpo = (config_from_args(config_sections()[s], args) for s in ("env", "policy", "grpo"))
    assert (grpo.beta, grpo.lora_r, grpo.group_size, policy.policy_dtype) == (0.0, 4, 8, "bfloat16")
    save_config(tmp_path / "config.yaml", env=env, policy=policy, grpo=grpo)
    again = parse_args(["train", "--config", str(tmp_path / "config.yaml")])
    assert config_from_args(GRPOConfig, again) == grpo and config_from_args(EnvConfig, again) == env
    with pytest.raises(ValueError, match="unknown fields"):
        (tmp_path / "bad.yaml").write_text("grpo:\n  num_epochs: 2\n")
        parse_args(["train", "--config", str(tmp_path / "bad.yaml")])


def test_placement_reaches_the_env_only_where_asked():
    kwargs = EnvConfig(backbone_dtype="bf16", cpu_offload=True).env_kwargs("random", device="cpu")
    assert kwargs["device"] == "cpu" and str(kwargs["torch_dtype"]) == "torch.bfloat16" and kwargs["cpu_offload"]
    assert "cpu_offload" not in EnvConfig().env_kwargs("random") and "device" not in EnvConfig().env_kwargs("random")
    parts = EnvConfig(reward="jpeg-incompressibility:2", reward_device="cpu").reward_spec()
    assert [(name, w) for (name, _), w in parts.items()] == [("jpeg-incompressibility", 2.0)]
    assert dataclasses.fields(PolicyConfig)  # the policy has its own dtype field
    assert PolicyConfig(policy_dtype="bfloat16").policy_dtype == "bfloat16"


def test_resuming_with_a_changed_config_is_refused(policy, envs, queries, tmp_path):
    base = dict(output_dir=str(tmp_path / "run"), max_steps=1, queries_per_iteration=2, group_size=2, progress=False)
    base.update(lora_r=4, lora_alpha=8)
    GRPOTrainer(policy, GRPOConfig(**base), envs, queries).train()
    changed = GRPOConfig(**{**base, "max_steps": 2, "beta": 0.04})
    with pytest.raises(ValueError, match=r"grpo\.beta: 0\.0 -> 0\.04"):
        GRPOTrainer(policy, changed, envs, queries).train()
    allowed = GRPOConfig(**{**base, "max_steps": 2, "beta": 0.04, "allow_config_change": True})
    assert [m["iteration"] for m in GRPOTrainer(policy, allowed, envs, queries).train()] == [2]


def test_no_silent_fallback_to_single_envs():
    gym.register("PromptLoopNoVector-v0", entry_point="promptloop_env.env:PromptLoopEnv")
    try:
        with pytest.raises(ValueError, match="vector_entry_point"):
            make_vector_env(2, env_id="PromptLoopNoVector-v0")
    finally:
        del gym.registry["PromptLoopNoVector-v0"]

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
    "name",
    [
        "toy",
        "toy-compose",
        "paper-sd15-imagereward",
        "paper-sd15-geneval",
        "sdxl-imagereward",
        "flux-schnell-pickscore",
    ],
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
        if key not in budget:  # a field several sections share (refine_schedule) may be set in one of them
            assert any(demo[s].get(key) == value for s in ("env", "policy", "grpo")), key


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
    kwargs = EnvConfig(torch_dtype="bf16", cpu_offload=True).env_kwargs("random", device="cpu")
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


GPU_RECIPES = ["paper-sd15-imagereward", "paper-sd15-geneval", "sdxl-imagereward", "flux-schnell-pickscore"]


def _recipe_configs(name, *flags):
    args = parse_args(["train", "--config", str(RECIPES / f"{name}.yaml"), *flags])
    return [config_from_args(config_sections()[s], args) for s in ("env", "policy", "grpo")]


@pytest.mark.parametrize("name", GPU_RECIPES)
def test_gpu_recipes_name_real_prompt_sets_and_their_launch(name):
    from promptloop_agents.learners.preflight import REAL_PROMPT_SETS, check_prompt_sets
    from promptloop_env.prompts import PROMPT_SETS

    env, _, grpo = _recipe_configs(name)
    assert grpo.train_prompts in REAL_PROMPT_SETS and grpo.eval_prompts in REAL_PROMPT_SETS
    assert grpo.beta == 0.04  # the recipes' KL coefficient (GRPOConfig's default is TRL's 0.0)
    check_prompt_sets(env, grpo)
    text = (RECIPES / f"{name}.yaml").read_text()
    assert "accelerate launch" in text and all(f"{n} GPU" in text for n in (1, 4, 8))
    # The real sets ship with the "Real prompts and GenEval" work; until then they are names only.
    for prompt_set in (grpo.train_prompts, grpo.eval_prompts):
        if prompt_set in PROMPT_SETS:
            from promptloop_agents.rollout import load_queries

            assert len(load_queries(prompt_set)) >= grpo.eval_queries


def test_a_toy_prompt_set_on_a_real_backbone_is_refused():
    from promptloop_agents.learners.preflight import check_prompt_sets

    env, _, grpo = _recipe_configs("paper-sd15-imagereward", "--train-prompts", "toy-user-train")
    with pytest.raises(ValueError, match="toy world's prompt set.*pickapic-train, pickapic-test, geneval"):
        check_prompt_sets(env, grpo)
    env, _, grpo = _recipe_configs("paper-sd15-imagereward", "--eval-prompts", "toy-compose-test")
    with pytest.raises(ValueError, match="eval_prompts='toy-compose-test'"):
        check_prompt_sets(env, grpo)
    check_prompt_sets(EnvConfig(backbone="toy-compose"), GRPOConfig(train_prompts="toy-compose-train"))


def test_every_missing_weight_is_named_at_start_up_in_one_error(tmp_path, monkeypatch):
    """Offline with an empty hub cache, the paper recipe names its backbone, policy, reward and eval metrics."""
    import time

    from promptloop_agents.learners.preflight import check_weights
    from promptloop_env.rewards import MissingWeightsError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env, policy, grpo = _recipe_configs("paper-sd15-imagereward")
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as caught:
        check_weights(env, policy, grpo, cache_dir=tmp_path)
    assert time.perf_counter() - start < 30  # seconds, not the minutes of a first iteration (generous: shared CPU)
    message = str(caught.value)
    for needed in ("stable-diffusion-v1-5/stable-diffusion-v1-5", "Qwen/Qwen2.5-VL-3B-Instruct", "THUDM/ImageReward"):
        assert f"hf download {needed}" in message
    assert "eval metric clip-score" in message and "eval metric aesthetic" in message and str(tmp_path) in message
    (tmp_path / "models--Qwen--Qwen2.5-VL-3B-Instruct" / "snapshots" / "abc").mkdir(parents=True)
    with pytest.raises(MissingWeightsError) as again:
        check_weights(env, policy, grpo, cache_dir=tmp_path)
    assert "Qwen/Qwen2.5-VL-3B-Instruct" not in str(again.value)  # found in the cache


def test_a_missing_eval_metric_fails_before_the_first_iteration(tmp_path, monkeypatch):
    from promptloop_agents.cli import train as train_module
    from promptloop_env.rewards import MissingWeightsError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    built = []
    monkeypatch.setattr(train_module, "make_vector_env", lambda *a, **k: built.append(a))
    env = EnvConfig(backbone="tiny", reward="jpeg-incompressibility")
    grpo = GRPOConfig(output_dir=str(tmp_path / "run"), eval_every=1, eval_metrics="jpeg-compressibility,pickscore")
    with pytest.raises(MissingWeightsError, match="eval metric pickscore"):
        train_module.train(env, PolicyConfig(), grpo)
    assert not built  # no env, no model: nothing was computed


def test_learners_are_chosen_by_name():
    from promptloop_agents.cli.train import LEARNERS, trainer_class

    assert trainer_class("grpo") is GRPOTrainer and set(LEARNERS) == {"grpo"}
    with pytest.raises(ValueError, match="grpo"):
        trainer_class("ppo")
    assert parse_args(["train", "--learner", "grpo"]).learner == "grpo"


def test_gpu_check_refuses_without_cuda_and_counts_the_recipe(monkeypatch):
    """benchmarks/gpu_check.py is run on a GPU only; here: its refusal and its arithmetic (never its models)."""
    import importlib.util
    import sys

    path = RECIPES.parent / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # dataclasses look their module up there
    spec.loader.exec_module(gpu_check)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        gpu_check.main([])
    sizes = {"policy": 3_754_622_976, "trainable": 29_933_568, "backbone": 1_066_235_307, "reward": 450_000_000}
    args = gpu_check.CheckArgs()
    lora = gpu_check.counted_gib(args, sizes, "lora", checkpointing=True)
    full = gpu_check.counted_gib(args, sizes, "full", checkpointing=False)
    assert set(lora) == {"denoise", "preview", "reward", "generate", "reference", "update"}
    assert 8 < lora["denoise"] < 15 < full["denoise"] and full["update"] > lora["update"]
    assert max(lora.values()) < 40  # the recipe's "40 GB or more per GPU" for LoRA
    assert gpu_check.gpu_slug("NVIDIA H100 80GB HBM3") == "h100_80gb_hbm3"


def test_accelerate_configs_parse_and_deepspeed_agrees_with_the_paper_recipe():
    import json
    import math

    from accelerate.commands.config.config_args import load_config_from_file

    folder = RECIPES / "accelerate"
    kinds = {name: load_config_from_file(str(folder / f"{name}.yaml")) for name in ("ddp", "fsdp")}
    assert kinds["ddp"].mixed_precision == "bf16" and kinds["fsdp"].mixed_precision == "bf16"
    assert kinds["fsdp"].fsdp_config["fsdp_version"] == 2  # FSDP1 cannot wrap LoRA's mixed dtypes
    env, policy, grpo = _recipe_configs("paper-sd15-imagereward")
    actions = grpo.queries_per_iteration * grpo.group_size * env.num_refinements
    micro_per_step = math.ceil(actions / grpo.num_minibatches / grpo.micro_batch_size)
    for stage in (2, 3):
        config = load_config_from_file(str(folder / f"deepspeed-zero{stage}.yaml"))
        assert config.deepspeed_config["deepspeed_config_file"] == f"recipes/accelerate/zero{stage}.json"
        settings = json.loads((folder / f"zero{stage}.json").read_text())
        assert settings["zero_optimization"]["stage"] == stage and settings["bf16"]["enabled"]
        assert settings["gradient_accumulation_steps"] == micro_per_step
        assert settings["train_micro_batch_size_per_gpu"] == grpo.micro_batch_size  # no "auto": no dataloader

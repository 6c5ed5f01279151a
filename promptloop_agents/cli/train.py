"""``promptloop train``: warm start (toy policy), then the learner chosen by name; saves the policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptloop_agents.configs import CONFIG_FILE, EnvConfig, config_dict, save_config
from promptloop_agents.learners.grpo_config import GRPOConfig
from promptloop_agents.learners.warm_start import prepare_policy
from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.policy_config import PolicyConfig
from promptloop_agents.rollout import load_queries, make_vector_env


def train(env: EnvConfig, policy: PolicyConfig, grpo: GRPOConfig, accelerator: Any = None) -> MLLMAgent:
    """``promptloop train``: warm start (toy policy) then GRPO; saves the policy in ``output_dir/policy``.

    The resolved config goes to ``output_dir/config.yaml`` (``--config`` reads it back). The backbone and the
    rewards run on this process's device unless ``env`` places them elsewhere.
    """
    from promptloop_agents.learners.distributed import is_sharded, make_accelerator
    from promptloop_agents.learners.grpo_trainer import GRPOTrainer

    run_dir = Path(grpo.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator = accelerator or make_accelerator(grpo.report_to, str(run_dir))
    run_config = config_dict(env=env, policy=policy, grpo=grpo)
    if accelerator.is_main_process:
        save_config(run_dir / CONFIG_FILE, env=env, policy=policy, grpo=grpo)
    device = accelerator.device
    envs = make_vector_env(
        grpo.queries_per_iteration * grpo.group_size, **env.env_kwargs(grpo.refine_schedule, device)
    )
    eval_envs = None
    if grpo.eval_every:
        schedule = "uniform" if grpo.refine_schedule == "random" else grpo.refine_schedule  # explicit: kept
        eval_envs = make_vector_env(grpo.eval_queries, **env.env_kwargs(schedule, device))
    queries = load_queries(grpo.train_prompts)
    agent = prepare_policy(policy, envs, queries, run_dir, grpo.seed, grpo.progress, accelerator)
    trainer = GRPOTrainer(
        agent, grpo, envs, queries, accelerator=accelerator, eval_envs=eval_envs, run_config=run_config
    )
    trainer.train()
    # Under FSDP / ZeRO-3 every rank takes part in gathering the full weights; the main process writes them.
    state = accelerator.get_state_dict(trainer.model) if is_sharded(accelerator) else None
    if trainer.is_main:
        # The policy learnt on previews of this side; it shrinks larger ones to it wherever it is evaluated.
        agent.preview_size = agent.preview_size or env.preview_size
        agent.save_pretrained(run_dir / "policy", copy_base=policy.policy == "toy", state_dict=state)
        from promptloop_agents.evaluation.plots import reward_curve

        if trainer.metrics_file.exists():
            reward_curve(trainer.metrics_file, run_dir / "reward_curve.png", reward=env.reward)
    envs.close()
    if eval_envs is not None:
        eval_envs.close()
    return agent


def trained_message(output_dir: str, backbone: str) -> str:
    """What ``promptloop train`` prints last: where the policy is and the command that evaluates it.

    >>> print(trained_message("runs/x", "toy-compose"))  # doctest: +NORMALIZE_WHITESPACE
    Policy saved in runs/x/policy (training log: runs/x/metrics.jsonl, curve: runs/x/reward_curve.png).
    Evaluate it against the baselines on held-out queries:
      promptloop eval --config runs/x/config.yaml --policy runs/x/policy --output-dir runs/x/eval
    """
    run = Path(output_dir).as_posix()
    agents = "" if backbone.split(",")[0] in ("toy-compose", "toy-shapes") else " --agents identity,static,policy"
    return (
        f"Policy saved in {run}/policy (training log: {run}/metrics.jsonl, curve: {run}/reward_curve.png).\n"
        "Evaluate it against the baselines on held-out queries:\n"
        f"  promptloop eval --config {run}/config.yaml --policy {run}/policy --output-dir {run}/eval{agents}"
    )

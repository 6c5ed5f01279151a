"""``promptloop train``: checks, warm start (toy policy), then the learner chosen by name; saves the policy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptloop_agents.configs import CONFIG_FILE, EnvConfig, config_dict, parse_dtype, save_config
from promptloop_agents.learners.grpo_config import GRPOConfig
from promptloop_agents.learners.warm_start import prepare_policy
from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.policy_config import PolicyConfig
from promptloop_agents.rollout import load_queries, make_vector_env
from promptloop_env.registry import Registry

LEARNERS: Registry[Callable[[], type]] = Registry("learner")
"""Learners by name (``promptloop train --learner NAME``): each entry returns a trainer class built as
``Trainer(policy, config, envs, queries, accelerator=..., held_out=..., run_config=...)`` with a ``train()``
method (imported only when chosen); a new learner is its module and one ``register`` line."""


@LEARNERS.register("grpo")
def _grpo() -> type:
    from promptloop_agents.learners.grpo_trainer import GRPOTrainer

    return GRPOTrainer


UNUSED_EVAL_ENV_REWARD = "jpeg-compressibility"


def trainer_class(name: str) -> type:
    """The trainer class registered as ``name`` in :data:`LEARNERS`."""
    return LEARNERS[name]()


def train(
    env: EnvConfig, policy: PolicyConfig, grpo: GRPOConfig, accelerator: Any = None, learner: str = "grpo"
) -> MLLMAgent:
    """``promptloop train``: checks, warm start (toy policy), then the learner; saves ``output_dir/policy``.

    Before any model is loaded, :func:`~promptloop_agents.learners.preflight.preflight` refuses a toy prompt set
    on a real backbone and names every missing weight at once. The held-out monitor's metric models are built
    here, at start-up, on the main process. The resolved config goes to ``output_dir/config.yaml``
    (``--config`` reads it back). The backbone and the rewards run on this process's device unless ``env``
    places them elsewhere.
    """
    from promptloop_agents.learners.distributed import is_sharded, make_accelerator
    from promptloop_agents.learners.held_out import HeldOutMonitor
    from promptloop_agents.learners.preflight import preflight

    trainer_type = trainer_class(learner)
    preflight(env, policy, grpo)
    run_dir = Path(grpo.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator = accelerator or make_accelerator(grpo.report_to, str(run_dir))
    run_config = config_dict(env=env, policy=policy, grpo=grpo)
    if accelerator.is_main_process:
        save_config(run_dir / CONFIG_FILE, env=env, policy=policy, grpo=grpo)
    device = accelerator.device
    held_out, eval_envs = None, None
    if grpo.eval_every:
        schedule = "uniform" if grpo.refine_schedule == "random" else grpo.refine_schedule  # explicit: kept
        # The monitor scores final images with its own metrics; the eval env's reward is never read, so a
        # weight-free one spares every rank a second copy of the training reward model.
        eval_kwargs = {**env.env_kwargs(schedule, device), "reward": UNUSED_EVAL_ENV_REWARD}
        per_rank = -(-grpo.eval_queries // accelerator.num_processes)  # the episodes are split across ranks
        eval_envs = make_vector_env(per_rank, **eval_kwargs)
        dtype = parse_dtype(env.reward_dtype or env.torch_dtype)
        where = env.reward_device or (env.device if env.device != "auto" else None) or device
        held_out = HeldOutMonitor.from_config(grpo, eval_envs, accelerator.is_main_process, where, dtype)
    envs = make_vector_env(
        grpo.queries_per_iteration * grpo.group_size, **env.env_kwargs(grpo.refine_schedule, device)
    )
    queries = load_queries(grpo.train_prompts)
    agent = prepare_policy(policy, envs, queries, run_dir, grpo.seed, grpo.progress, accelerator)
    trainer = trainer_type(
        agent, grpo, envs, queries, accelerator=accelerator, held_out=held_out, run_config=run_config
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

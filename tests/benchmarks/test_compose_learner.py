"""The training curve's control variate (benchmarks/compose_learner.py): a fixed agent replayed on a run's draws."""

import json

import numpy as np

from promptloop_agents.compose_policy import CategoryRewriteAgent, load_selection
from promptloop_agents.configs import EnvConfig, GRPOConfig, save_config
from promptloop_agents.evaluation import agent_act_fn
from promptloop_agents.grpo import iteration_draws
from promptloop_agents.rollout import make_vector_env, run_episodes
from promptloop_agents.runner import load_queries
from promptloop_agents.toy_policy import SHIPPED_TOY_COMPOSE_POLICY


def test_reference_rewards_replay_each_iterations_groups(benchmark_script, tmp_path):
    env = EnvConfig(backbone="toy-compose", reward="toy-compose-soft", num_inference_steps=6, num_refinements=2)
    grpo = GRPOConfig(
        output_dir=str(tmp_path), train_prompts="toy-compose-train", queries_per_iteration=2, group_size=3,
        same_noise=True, refine_schedule="0,3",
    )  # fmt: skip
    save_config(tmp_path / "config.yaml", env=env, grpo=grpo)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"reward_mean": 0.5}) + "\n" for _ in range(3)))
    rewards = benchmark_script("compose_learner").reference_rewards(tmp_path, "one-shot", progress=False)
    assert rewards.shape == (3, 2) and ((rewards >= 0) & (rewards <= 1)).all()
    # each row is the one-shot rewrite on that iteration's two (query, noise) groups, played here directly
    queries = load_queries("toy-compose-train")
    draws = [iteration_draws(grpo, i, len(queries))[2:] for i in range(3)]
    envs = make_vector_env(6, **env.env_kwargs(grpo.refine_schedule))  # as the replay batches them
    act = agent_act_fn(CategoryRewriteAgent(load_selection(SHIPPED_TOY_COMPOSE_POLICY)))
    group_queries = [queries[i] for chosen, _ in draws for i in chosen[::3]]
    direct = run_episodes(envs, act, group_queries, [int(s) for _, seeds in draws for s in seeds[::3]])
    envs.close()
    assert rewards.ravel().tolist() == [e.reward for e in direct]
    assert len({q for q in group_queries}) > 1


def test_trend_finds_a_rising_line(benchmark_script):
    trend = benchmark_script("compose_learner")._trend(np.arange(10) * 0.01 + np.tile([0.002, -0.002], 5))
    assert trend["ci_low"] > 0 and abs(trend["mean"] - 0.01) < 0.002

"""The training-curve measures (a fixed agent on a run's draws, saved policies on fixed draws) and seed pooling of
research/toy_compose/compose_learner.py."""

import json

import numpy as np

from promptloop_agents.configs import EnvConfig, save_config
from promptloop_agents.evaluation.harness import agent_act_fn
from promptloop_agents.learners.grpo_config import GRPOConfig
from promptloop_agents.learners.grpo_trainer import iteration_draws
from promptloop_agents.policies.compose_teacher import CategoryRewriteAgent, load_selection
from promptloop_agents.policies.toy_policy import SHIPPED_TOY_COMPOSE_POLICY
from promptloop_agents.rollout import load_queries, make_vector_env, run_episodes
from research.toy_compose import compose_learner


def test_reference_rewards_replay_each_iterations_groups(tmp_path):
    env = EnvConfig(backbone="toy-compose", reward="toy-compose-soft", num_inference_steps=6, num_refinements=2)
    grpo = GRPOConfig(
        output_dir=str(tmp_path), train_prompts="toy-compose-train", queries_per_iteration=2, group_size=3,
        same_noise=True, refine_schedule="0,3",
    )  # fmt: skip
    save_config(tmp_path / "config.yaml", env=env, grpo=grpo)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"reward_mean": 0.5}) + "\n" for _ in range(3)))
    rewards = compose_learner.reference_rewards(tmp_path, "one-shot", progress=False)
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


def test_trend_finds_a_rising_line():
    trend = compose_learner._trend(np.arange(10) * 0.01 + np.tile([0.002, -0.002], 5))
    assert trend["ci_low"] > 0 and abs(trend["mean"] - 0.01) < 0.002


def test_checkpoint_rewards_play_each_saved_policy_on_the_same_draws(tmp_path):
    import pytest
    import torch

    from promptloop_agents.learners.checkpoint import save_checkpoint
    from promptloop_agents.policies.mllm import MLLMAgent
    from promptloop_agents.policies.policy_config import PolicyConfig

    env = EnvConfig(backbone="toy-compose", reward="toy-compose-soft", num_inference_steps=6, num_refinements=2)
    grpo = GRPOConfig(output_dir=str(tmp_path), train_prompts="toy-compose-train", refine_schedule="0,3")
    policy = PolicyConfig(policy="toy", temperature=1.3, do_sample=True)
    save_config(tmp_path / "config.yaml", env=env, policy=policy, grpo=grpo)
    agent = MLLMAgent.from_pretrained(SHIPPED_TOY_COMPOSE_POLICY)
    agent.add_lora(seed=0)
    lora = {n: p for n, p in agent.model.named_parameters() if "lora_" in n}
    agent.save_pretrained(tmp_path / "policy")
    torch.manual_seed(1)
    moved = {n: p.detach() + 0.3 * torch.randn_like(p) for n, p in lora.items()}  # iteration 1: a changed adapter
    save_checkpoint(tmp_path / "checkpoints", 1, moved, None, keep=5)
    save_checkpoint(tmp_path / "checkpoints", 2, {n: p.detach() for n, p in lora.items()}, None, keep=5)

    script = compose_learner
    iterations, rewards = script.checkpoint_rewards(tmp_path, draws=4, iterations=[0, 1, 2, 0], progress=False)
    assert iterations == [0, 1, 2, 0] and rewards.shape == (4, 4)
    assert rewards[1].tolist() != rewards[0].tolist()  # the changed adapter was played
    # iteration 0 is the warm start whatever was loaded before; iteration 2 saved the untouched adapter (B = 0)
    assert rewards[0].tolist() == rewards[3].tolist() == rewards[2].tolist()
    # and the warm start is the plain policy, sampled the same way on the same draws
    rng = np.random.default_rng([2026, 12])
    queries = load_queries("toy-compose-train")
    chosen = [queries[i] for i in rng.choice(len(queries), 4, replace=False)]
    noise = [int(s) for s in rng.integers(0, 2**31 - 1, size=4)]
    plain = MLLMAgent.from_pretrained(SHIPPED_TOY_COMPOSE_POLICY, temperature=1.3, do_sample=True)
    envs = make_vector_env(4, **env.env_kwargs(grpo.refine_schedule))
    torch.manual_seed(2026)
    direct = run_episodes(envs, agent_act_fn(plain), chosen, noise)
    assert np.allclose(rewards[0], [e.reward for e in direct], atol=1e-6)
    # greedy: the plain policy's most likely prompts on the same draws, whatever the sampling seed
    _, greedy = script.checkpoint_rewards(tmp_path, draws=4, iterations=[0], progress=False, greedy=True)
    _, again = script.checkpoint_rewards(tmp_path, 4, iterations=[0], progress=False, greedy=True, sampling_seed=5)
    mode = MLLMAgent.from_pretrained(SHIPPED_TOY_COMPOSE_POLICY, do_sample=False)
    direct = run_episodes(envs, agent_act_fn(mode), chosen, noise)
    assert np.allclose(greedy[0], [e.reward for e in direct], atol=1e-6) and greedy.tolist() == again.tolist()
    envs.close()
    with pytest.raises(ValueError, match="save_every 1"):
        script.checkpoint_rewards(tmp_path, draws=4, iterations=[0, 3], progress=False)


def test_checkpoint_curve_compares_the_windows_and_keeps_the_matrix(tmp_path, monkeypatch):
    script = compose_learner
    run = tmp_path / "runs" / "rising"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n" * 12)  # 12 iterations: windows of 3 are 1-3 and 10-12
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, size=50)

    samplings = []

    def fake_rewards(folder, draws, seed, wanted, progress, sampling_seed=None, greedy=False):  # i adds 0.01 * i
        assert folder == run and draws == 50 and wanted in ([0, 1, 2, 3, 10, 11, 12], [0])
        samplings.append(sampling_seed)
        return wanted, np.array([base + 0.01 * i + rng.normal(0, 0.001, size=50) for i in wanted])

    monkeypatch.setattr(script, "checkpoint_rewards", fake_rewards)
    monkeypatch.setattr(script, "RESULTS", tmp_path / "results")
    (tmp_path / "results" / "compose_training").mkdir(parents=True)
    kept = {"older": {"iterations": [0, 1], "means": [0.5, 0.6]}}
    (tmp_path / "results" / "compose_training" / "checkpoints.json").write_text(json.dumps(kept))
    out = script.checkpoint_curve(
        tmp_path / "runs", ["rising"], window=3, draws=50, progress=False, warm_start_seeds=3
    )
    out = out["rising"]
    assert samplings == [None, 2027, 2028]  # the warm start played again under two more sampling seeds
    assert len(out["warm_start_sampling_means"]) == 3
    assert abs(out["last_minus_first_paired_over_draws"]["mean"] - 0.09) < 0.002
    assert 0.05 < out["last_minus_first_welch_over_iterations"]["ci_low"] < 0.09
    assert abs(out["first_minus_warm_start_paired_over_draws"]["mean"] - 0.02) < 0.002
    assert abs(out["last_minus_warm_start_paired_over_draws"]["mean"] - 0.11) < 0.002
    assert np.array(out["rewards"]).shape == (7, 50) and abs(out["rewards"][0][0] - base[0]) < 0.005
    text = (tmp_path / "results" / "compose_training" / "checkpoints.json").read_text()
    assert len(text.splitlines()) < 60  # a line per checkpoint's 50 rewards, not per reward
    written = json.loads(text)
    assert set(written) == {"older", "rising"} and written["rising"]["means"] == out["means"]
    assert (tmp_path / "results" / "compose_training" / "checkpoints.png").exists()


def test_pool_seeds_averages_policies_per_query_and_checks_the_episodes(tmp_path):
    import pytest

    rng = np.random.default_rng(0)
    queries, cats = [f"q{i}" for i in range(12)], ["a", "b"] * 6

    def scores():
        return {"toy-compose": rng.integers(0, 2, size=(12, 3)).astype(float).tolist()}

    base = scores()
    files = []
    for k in range(2):
        agent = f"s{k}"
        episodes = {"one_shot": {"scores": base}}
        episodes.update({agent + suffix: {"scores": scores()} for suffix in ("", "_a_priori", "_blank")})
        data = {"queries": queries, "categories": cats, "seeds": [[1, 2, 3]] * 12}
        data["backbones"] = {"toy-compose": {"episodes": episodes}}
        (tmp_path / f"{agent}.json").write_text(json.dumps(data))
        files.append((tmp_path / f"{agent}.json", agent, data))
    script = compose_learner
    pooled = script.pool_seeds([(f, a) for f, a, _ in files[1:]], "test", results=tmp_path, reference=[files[0][:2]])
    one = np.mean(files[1][2]["backbones"]["toy-compose"]["episodes"]["s1_blank"]["scores"]["toy-compose"], axis=1)
    ref = np.mean(files[0][2]["backbones"]["toy-compose"]["episodes"]["s0_blank"]["scores"]["toy-compose"], axis=1)
    got = pooled["toy-compose"]["pooled_minus_reference"]["blank previews - s0 blank previews"]["mean"]
    assert abs(got - round((one - ref).mean(), 4)) < 1e-9
    # several references are pooled like the seeds: here s0 and s1 against themselves pooled
    both = [(f, a) for f, a, _ in files]
    pooled = script.pool_seeds(both, "test", results=tmp_path, reference=both, reference_name="again")
    assert pooled["toy-compose"]["pooled_minus_reference"]["a priori - again a priori"]["mean"] == 0
    out = script.pool_seeds([(f, a) for f, a, _ in files], "test", results=tmp_path)["toy-compose"]
    closed = np.mean([np.mean(d["backbones"]["toy-compose"]["episodes"][a]["scores"]["toy-compose"], axis=1)
                      for _, a, d in files], axis=0)  # fmt: skip
    expected = (closed - np.mean(base["toy-compose"], axis=1)).mean()
    assert abs(out["pooled_differences"]["closed loop - one_shot"]["mean"] - round(expected, 4)) < 1e-9
    assert set(out["per_seed"]) == {"s0", "s1"} and (tmp_path / "compose_test" / "pooled.md").exists()
    files[1][2]["seeds"][0] = [9, 9, 9]  # another seed's episodes: not poolable
    files[1][0].write_text(json.dumps(files[1][2]))
    with pytest.raises(ValueError, match="same episodes"):
        script.pool_seeds([(f, a) for f, a, _ in files], "test", results=tmp_path)


def test_seed_power_splits_the_variance_into_noise_seeds_and_queries(tmp_path):
    import pytest

    script = compose_learner
    rng = np.random.default_rng(0)
    num_queries, num_seeds = 40, 4
    base = rng.integers(0, 2, size=(num_queries, num_seeds)).astype(float)

    def write(name: str, policy: np.ndarray, seeds=None) -> tuple:
        data = {"seeds": seeds or [[1, 2, 3, 4]] * num_queries}
        episodes = {
            "one_shot": {"scores": {"toy-compose": base.tolist()}},
            name: {"scores": {"toy-compose": policy.tolist()}},
        }
        data["backbones"] = {"toy-compose": {"episodes": episodes}}
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
        return tmp_path / f"{name}.json", name

    # a per-query effect the same on every seed: no noise-seed part; more seeds cannot narrow the interval
    effect = rng.normal(0.0, 0.2, size=(num_queries, 1))
    out = script.seed_power([write("fixed", base + effect)], "p", results=tmp_path)
    assert out["noise_seed_part"] == 0 and out["noise_seed_share"] == 0
    assert len(set(out["projected_half_width"].values())) == 1
    assert abs(out["projected_half_width"]["4"] - 1.96 * np.sqrt(effect.var(ddof=1) / num_queries)) < 1e-3
    # every query's differences average to the same value: all of the spread is the seeds'; the half-width
    # halves with four times the seeds
    noise = rng.normal(0.0, 0.3, size=(num_queries, num_seeds))
    noise -= noise.mean(axis=1, keepdims=True) - 0.05
    two = [write("a", base + noise), write("b", base + noise)]  # pooled, as pool_seeds pools them
    out = script.seed_power(two, "p", results=tmp_path)
    assert out["query_part"] == 0 and out["noise_seed_share"] == 1 and out["mean_difference"] == 0.05
    half = out["projected_half_width"]
    assert abs(half["16"] - half["4"] / 2) < 2e-4 and (tmp_path / "compose_p" / "power.json").exists()
    with pytest.raises(ValueError, match="same episodes"):
        script.seed_power([two[0], write("c", base, seeds=[[9, 9, 9, 9]] * num_queries)], "p", results=tmp_path)

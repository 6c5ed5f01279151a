import json

import numpy as np
import pytest
import torch

from promptloop_agents.learners.grpo_config import GRPOConfig
from promptloop_agents.learners.grpo_trainer import GRPOTrainer
from promptloop_agents.learners.objectives import group_advantages, reduce_loss, zero_std_groups
from promptloop_agents.rollout import split_observations


def _config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        queries_per_iteration=2,
        group_size=2,
        learning_rate=5e-3,
        save_every=1,
        progress=False,
        lora_r=4,
        lora_alpha=8,
        beta=0.04,  # a reference and its KL in every test (TRL's default, and ours, is 0)
    )
    return GRPOConfig(**{**base, **kw})


def _lora(trainer):
    return {n: p.detach().clone() for n, p in trainer.policy.model.named_parameters() if "lora_" in n}


def test_group_advantages_are_normalised_within_groups():
    adv = group_advantages(np.array([0.0, 1.0, 2.0, 10.0, 10.0, 10.0]), 3)
    assert np.allclose(adv[:3], [-1, 0, 1], atol=1e-3) and np.allclose(adv[3:], 0)


def test_on_policy_ratio_is_exactly_one_and_the_policy_moves(policy, envs, queries, tmp_path):
    config = _config(tmp_path, num_iterations=2, max_steps=1, malformed_penalty=0.1)
    trainer = GRPOTrainer(policy, config, envs, queries)
    before = _lora(trainer)
    (metrics,) = trainer.train()
    # epoch 0 compares recomputed old log-probs with the current ones: identical computation, ratio == 1.
    assert metrics["ratio_max_dev"] == 0.0
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA B starts at zero: policy == reference
    after = _lora(trainer)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"reward_mean", "time_denoise", "time_generate", "time_update", "malformed_fraction"} <= set(line)


def test_resume_continues_exactly(policy, envs, queries, tmp_path):
    from promptloop_agents.policies.toy_policy import build_toy_policy, world_words

    straight = GRPOTrainer(policy, _config(tmp_path / "a", max_steps=3), envs, queries)
    straight.train()
    first = build_toy_policy("tiny", words=world_words(), max_new_tokens=8)
    GRPOTrainer(first, _config(tmp_path / "b", max_steps=2), envs, queries).train()
    again = build_toy_policy("tiny", words=world_words(), max_new_tokens=8)
    resumed = GRPOTrainer(again, _config(tmp_path / "b", max_steps=3), envs, queries)
    history = resumed.train()
    assert [m["iteration"] for m in history] == [3]
    assert all(torch.equal(a, b) for a, b in zip(_lora(straight).values(), _lora(resumed).values(), strict=True))
    lines = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [1, 2, 3]


def test_trainer_validates_its_config(policy, envs, queries, tmp_path):
    with pytest.raises(ValueError, match="divide"):
        GRPOTrainer(policy, _config(tmp_path, queries_per_iteration=3), envs, queries)
    with pytest.raises(ValueError, match="group_size"):
        _config(tmp_path, group_size=1, queries_per_iteration=4)


def _one_decision(trainer, envs, queries):
    """One batched policy decision on fresh observations: a sample of ``envs.num_envs`` actions."""
    batched, _ = envs.reset(seed=list(range(envs.num_envs)), options={"query": queries[: envs.num_envs]})
    return trainer.policy.sample(split_observations(batched, envs.num_envs))


def _sequence_logps(trainer, sample):
    batch = trainer.policy.collate([(sample, row) for row in range(len(sample))])
    with torch.no_grad():
        return trainer.policy.logps(trainer.policy.model, batch).sum(-1)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_an_update_raises_positive_and_lowers_negative_advantage_completions(
    policy, envs, queries, tmp_path, loss_type
):
    config = _config(tmp_path, beta=0.0, learning_rate=2e-2, loss_type=loss_type, micro_batch_size=2)
    trainer = GRPOTrainer(policy, config, envs, queries)
    torch.manual_seed(0)
    sample = _one_decision(trainer, envs, queries)
    before = _sequence_logps(trainer, sample)
    advantages = np.array([1.0, -1.0, 1.0, -1.0])
    stats = trainer.update([sample], advantages, None, np.random.default_rng(0))
    delta = _sequence_logps(trainer, sample) - before
    assert (delta[advantages > 0] > 0).all() and (delta[advantages < 0] < 0).all(), delta
    assert stats["ratio_max_dev"] == 0.0 and stats["clip_fraction"] == 0.0  # one on-policy step never clips
    assert stats["entropy"] > 0


def test_clipping_engages_with_more_than_one_epoch(policy, envs, queries, tmp_path):
    config = _config(tmp_path, beta=0.0, learning_rate=5e-2, num_iterations=4, num_minibatches=2)
    trainer = GRPOTrainer(policy, config, envs, queries)
    torch.manual_seed(0)
    sample = _one_decision(trainer, envs, queries)
    stats = trainer.update([sample], np.array([1.0, -1.0, 1.0, -1.0]), None, np.random.default_rng(0))
    assert stats["ratio_max_dev"] == 0.0  # the first step is on-policy
    assert stats["clip_fraction"] > 0 and stats["optimizer_steps"] == 8


def test_gradient_checkpointing_keeps_the_first_ratio_exactly_one(policy, envs, queries, tmp_path):
    config = _config(tmp_path, max_steps=1, num_iterations=2, gradient_checkpointing=True, truncation_penalty=0.5)
    (metrics,) = GRPOTrainer(policy, config, envs, queries).train()
    assert metrics["ratio_max_dev"] == 0.0 and "truncated_fraction" in metrics


def test_full_finetuning_keeps_a_frozen_reference(policy, envs, queries, tmp_path):
    trainer = GRPOTrainer(policy, _config(tmp_path, finetuning="full", max_steps=1), envs, queries)
    assert trainer.reference is not None and not any(p.requires_grad for p in trainer.reference.parameters())
    frozen = {n: p.detach().clone() for n, p in trainer.reference.named_parameters()}
    (metrics,) = trainer.train()
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference before the first step
    assert all(torch.equal(p, frozen[n]) for n, p in trainer.reference.named_parameters())
    assert not any("lora_" in n for n, _ in trainer.policy.model.named_parameters())


def test_top_k_enters_the_log_probabilities(policy, envs, queries, tmp_path):
    trainer = GRPOTrainer(policy, _config(tmp_path), envs, queries)
    policy.top_k = 1  # sampling is then greedy: every sampled token has probability 1 under the sampling law
    sample = _one_decision(trainer, envs, queries)
    assert torch.allclose(_sequence_logps(trainer, sample), torch.zeros(len(sample)), atol=1e-5)


def test_loss_normalisations_and_zero_variance_groups():
    per_token = torch.ones(2, 4)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert reduce_loss(per_token, mask, "grpo", 2, 6.0, 8).item() == pytest.approx(1.0)
    assert reduce_loss(per_token, mask, "dapo", 2, 6.0, 8).item() == pytest.approx(1.0)
    assert reduce_loss(per_token, mask, "dr_grpo", 2, 6.0, 8).item() == pytest.approx(6 / 16)
    assert zero_std_groups(np.array([1.0, 1.0, 0.0, 1.0]), 2).tolist() == [True, True, False, False]
    rewards = np.array([0.0, 2.0, 0.0, 4.0])
    scaled = group_advantages(rewards, 2, scale_rewards="batch")
    assert np.allclose(scaled, np.array([-1.0, 1.0, -2.0, 2.0]) / rewards.std(ddof=1), atol=1e-3)


def test_query_cycle_replays_the_same_groups(policy, envs, queries, tmp_path, monkeypatch):
    import promptloop_agents.learners.grpo_trainer as grpo

    played, real = [], grpo.run_episodes

    def recording(envs, act, queries, seeds, **kw):
        played.append((list(queries), [int(s) for s in seeds]))
        return real(envs, act, queries, seeds, **kw)

    monkeypatch.setattr(grpo, "run_episodes", recording)
    config = _config(tmp_path, max_steps=3, query_cycle=2, same_noise=True, queries_per_iteration=2)
    GRPOTrainer(policy, config, envs, queries).train()
    assert played[2] == played[0] and played[1] != played[0]
    with pytest.raises(ValueError, match="query_cycle"):
        _config(tmp_path, query_cycle=-1)
    # the draws can be replayed after the run (a fixed agent scored on the run's own episodes)
    for i, (played_queries, played_seeds) in enumerate(played):
        _, _, chosen, seeds = grpo.iteration_draws(config, i, len(queries))
        assert played_queries == [queries[j] for j in chosen] and played_seeds == seeds.tolist()
        assert len(set(seeds.tolist())) == config.queries_per_iteration  # same_noise: one seed per group


def test_sequence_level_ratio_and_two_sided_clipping():
    from promptloop_agents.learners.objectives import clipped_objective

    logps = torch.tensor([[0.0, -1.0, 0.0]])
    old = torch.tensor([[-0.5, -0.5, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    token = clipped_objective(logps, old, torch.tensor([1.0]), 0.2, mask=mask)
    sequence = clipped_objective(logps, old, torch.tensor([1.0]), 0.2, mask=mask, importance_sampling_level="sequence")
    assert not torch.allclose(token.ratio[0, :2], token.ratio[0, :1].expand(2))
    assert torch.allclose(sequence.ratio, torch.ones(1, 3))  # mean log-ratio over the two tokens is 0
    big = clipped_objective(torch.tensor([[2.0]]), torch.zeros(1, 1), torch.tensor([-1.0]), 0.2, delta=1.5)
    assert big.per_token.item() == pytest.approx(1.5)  # the unclipped ratio e^2 capped at delta
    with pytest.raises(ValueError, match="delta"):
        GRPOConfig(delta=1.1)
    with pytest.raises(ValueError, match="importance_sampling_level"):
        GRPOConfig(importance_sampling_level="episode")


def test_truncated_answers_are_masked_and_weights_stay_fp32(policy, envs, queries, tmp_path):
    policy.model.to(torch.bfloat16)
    config = _config(tmp_path, mask_truncated_completions=True, micro_batch_size=4)
    trainer = GRPOTrainer(policy, config, envs, queries)
    assert all(p.dtype == torch.float32 for p in trainer.params)  # fp32 adapters on the bf16 base
    assert any(p.dtype == torch.bfloat16 for p in trainer.policy.model.parameters())
    torch.manual_seed(0)
    sample = _one_decision(trainer, envs, queries)
    truncated = [trainer._truncated(c) for c in sample.completions]
    (micro,) = trainer._micro_batches([sample], np.zeros(4), None, np.random.default_rng(0))
    rows_masked = micro[0].batch.completion_mask.sum(-1) == 0
    assert rows_masked.tolist() == truncated and micro[0].num_actions == 4


def test_full_finetuning_keeps_fp32_master_weights(policy, envs, queries, tmp_path):
    policy.model.to(torch.bfloat16)
    trainer = GRPOTrainer(policy, _config(tmp_path, finetuning="full"), envs, queries)
    assert all(p.dtype == torch.float32 for p in trainer.policy.model.parameters())
    assert all(p.dtype == torch.bfloat16 for p in trainer.reference.parameters())  # the reference as loaded

import json

import numpy as np
import pytest
import torch

from promptloop_agents.configs import GRPOConfig
from promptloop_agents.grpo import GRPOTrainer, group_advantages


def _config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "run"),
        num_iterations=2,
        queries_per_iteration=2,
        group_size=2,
        learning_rate=5e-3,
        save_every=1,
        progress=False,
        lora_r=4,
        lora_alpha=8,
    )
    return GRPOConfig(**{**base, **kw})


def _lora(trainer):
    return {n: p.detach().clone() for n, p in trainer.agent.model.named_parameters() if "lora_" in n}


def test_group_advantages_are_normalised_within_groups():
    adv = group_advantages(np.array([0.0, 1.0, 2.0, 10.0, 10.0, 10.0]), 3)
    assert np.allclose(adv[:3], [-1, 0, 1], atol=1e-3) and np.allclose(adv[3:], 0)


def test_on_policy_ratio_is_exactly_one_and_the_policy_moves(policy, envs, queries, tmp_path):
    config = _config(tmp_path, num_epochs=2, num_iterations=1, malformed_penalty=0.1)
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
    from promptloop_agents.toy_policy import build_toy_policy, world_words

    straight = GRPOTrainer(policy, _config(tmp_path / "a", num_iterations=3), envs, queries)
    straight.train()
    first = build_toy_policy("tiny", words=world_words(), max_new_tokens=8)
    GRPOTrainer(first, _config(tmp_path / "b", num_iterations=2), envs, queries).train()
    again = build_toy_policy("tiny", words=world_words(), max_new_tokens=8)
    resumed = GRPOTrainer(again, _config(tmp_path / "b", num_iterations=3), envs, queries)
    history = resumed.train()
    assert [m["iteration"] for m in history] == [3]
    assert all(torch.equal(a, b) for a, b in zip(_lora(straight).values(), _lora(resumed).values(), strict=True))
    lines = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [1, 2, 3]


def test_trainer_validates_its_config(policy, envs, queries, tmp_path):
    with pytest.raises(ValueError, match="divide"):
        GRPOTrainer(policy, _config(tmp_path, queries_per_iteration=3), envs, queries)
    with pytest.raises(ValueError, match="group_size"):
        GRPOTrainer(policy, _config(tmp_path, group_size=1, queries_per_iteration=4), envs, queries)

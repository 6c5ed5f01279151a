import numpy as np

from promptloop_agents.learners.distributed import make_accelerator
from promptloop_agents.learners.sft import collect_examples, supervised_finetune, text_only_examples
from promptloop_agents.learners.warm_start import prepare_policy
from promptloop_agents.policies.mllm import AGENT_FILE
from promptloop_agents.policies.policy_config import PolicyConfig
from promptloop_agents.policies.toy_rewrites import toy_rewrite, toy_teacher
from promptloop_agents.rollout import num_refinements
from promptloop_env.toy.world import parse_query


def test_toy_rewrites_keep_the_named_attributes():
    rng = np.random.default_rng(0)
    queries = ["a small blue square on the left, black background", "a large red circle", "a white shape at the top"]
    for query in queries:
        rewrites = {toy_rewrite(query, rng) for _ in range(30)}
        assert len(rewrites) > 3  # varied
        for rewrite in rewrites:
            found = parse_query(rewrite)
            assert all(found.get(k) == v for k, v in parse_query(query).items()), rewrite


def test_warm_start_examples_and_fit(policy, envs, queries):
    real = collect_examples(envs, toy_teacher, queries, targets_per_observation=2, text_only_fraction=0.0)
    assert len(real) == len(queries) * num_refinements(envs) * 2 and all(ex.with_image for ex in real)
    text = text_only_examples(queries, toy_teacher, per_query=3, num_refinements=num_refinements(envs))
    assert len(text) == 3 * len(queries) and not any(ex.with_image for ex in text)
    losses = supervised_finetune(policy, real + text, steps=8, batch_size=8, learning_rate=5e-3, progress=False)
    assert np.mean(losses[-3:]) < losses[0]
    assert not any(p.requires_grad for p in policy.model.parameters())


def test_prepare_policy_starts_from_a_given_warm_start(policy, envs, queries, tmp_path):
    policy.save_pretrained(tmp_path / "given")
    config = PolicyConfig(warm_start_from=str(tmp_path / "given"), max_new_tokens=5)
    agent = prepare_policy(config, envs, queries, tmp_path / "run", 0, False, make_accelerator())
    assert (tmp_path / "run" / "warm_start" / AGENT_FILE).exists() and agent.max_new_tokens == 5

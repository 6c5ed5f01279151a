import numpy as np
import pytest

from promptloop_agents import Agent, IdentityAgent, RandomModifierAgent, StaticRewriteAgent, act_batch
from promptloop_agents.rollout import run_episodes

OBS = {
    "image": np.zeros((8, 8, 3), np.uint8),
    "query": "a red circle",
    "prompt": "a red circle",
    "segment": 0,
    "timestep": np.array([0.0], np.float32),
}


@pytest.mark.parametrize("agent", [IdentityAgent(), StaticRewriteAgent(), RandomModifierAgent()])
def test_baselines_follow_the_protocol(agent):
    assert isinstance(agent, Agent)
    agent.reset(seed=0)
    prompt = agent.act(OBS)
    assert isinstance(prompt, str) and prompt.startswith("a red circle")
    batch = act_batch(agent, [OBS, OBS])
    assert len(batch) == 2 and all(isinstance(p, str) for p in batch)


def test_static_rewrite_uses_rewriter_once_per_query():
    calls = []
    agent = StaticRewriteAgent(rewriter=lambda q: calls.append(q) or q.upper())
    assert agent.act(OBS) == "A RED CIRCLE" and agent.act({**OBS, "segment": 1}) == "A RED CIRCLE"
    assert calls == ["a red circle"]
    with pytest.raises(ValueError, match="query"):
        StaticRewriteAgent(template="no placeholder")


def test_random_modifiers_are_reproducible():
    a, b = RandomModifierAgent(seed=1), RandomModifierAgent(seed=2)
    a.reset(seed=5)
    b.reset(seed=5)
    assert [a.act(OBS) for _ in range(5)] == [b.act(OBS) for _ in range(5)]
    with pytest.raises(ValueError):
        RandomModifierAgent(modifiers=[])


def test_baselines_run_episodes_on_the_env(envs):
    queries = ["a red circle", "a blue square", "a red circle", "a blue square"]
    episodes = run_episodes(envs, lambda obs: act_batch(IdentityAgent(), obs), queries, [0, 1, 2, 3], keep_images=True)
    assert [e.prompts for e in episodes] == [[q, q] for q in queries]
    assert all(e.final_image is not None and len(e.previews) == 2 for e in episodes)
    assert all(np.isfinite(e.reward) and e.reward_components for e in episodes)
    assert all(not name.startswith("_") for e in episodes for name in e.reward_components)  # no vector-env masks

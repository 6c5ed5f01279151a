import numpy as np
import pytest
import torch

from promptloop_agents import MLLMAgent
from promptloop_agents.policies.mllm import pad_completions
from promptloop_agents.policies.processing import observation_to_messages, parse_prompt


def _obs(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            "query": "a red circle",
            "prompt": f"a red circle {i}",
            "segment": 1,
            "timestep": np.array([0.4], np.float32),
        }
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("answer", "tag", "expected"),
    [
        ("<prompt> a blue square </prompt> extra", "prompt", "a blue square"),
        ("<prompt>cut off", "prompt", "cut off"),
        ("no tag", "prompt", None),
        ("<prompt>  </prompt>", "prompt", None),
        ("line one\nline two", None, "line one"),
        ("\x00\x01", None, None),
        ('"quoted"', None, "quoted"),
    ],
)
def test_parse_prompt(answer, tag, expected):
    assert parse_prompt(answer, tag) == expected


def test_messages_are_a_markov_state():
    messages = observation_to_messages(_obs(1)[0])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"][0] == {"type": "image"}
    assert "a red circle 0" in messages[1]["content"][1]["text"] and "40%" in messages[1]["content"][1]["text"]


def test_sample_bans_structural_tokens_and_counts_malformed(policy):
    torch.manual_seed(0)
    sample = policy.sample(_obs())
    for completion in sample.completions:
        assert not set(completion.tolist()) & set(policy.banned_token_ids)
    policy.answer_tag = "prompt"  # a random model never writes the tag: every answer falls back
    sample = policy.sample(_obs())
    assert all(sample.malformed) and policy.num_malformed == 3
    assert sample.prompts == [o["prompt"] for o in _obs()]


def test_training_logps_match_sampling_logps(policy):
    """The recomputed full forward gives the log-probs generate() sampled from (KV cache vs none)."""
    torch.manual_seed(1)
    observations = _obs()
    texts, images = policy.render(observations, with_images=True)
    inputs = policy.build_inputs(texts, images)
    out = policy.model.generate(
        **inputs,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        max_new_tokens=6,
        suppress_tokens=policy.banned_token_ids,
        pad_token_id=policy.pad_token_id,
        eos_token_id=policy.eos_token_ids,
        output_scores=True,
        return_dict_in_generate=True,
    )
    completions = [policy._trim(row) for row in out.sequences[:, inputs["input_ids"].shape[1] :]]
    ids, mask = pad_completions(completions, policy.pad_token_id)
    scores = torch.stack(out.scores, 1)[:, : ids.shape[1]].log_softmax(-1)
    sampled = scores.gather(-1, ids.clamp(max=scores.shape[-1] - 1).unsqueeze(-1)).squeeze(-1) * mask
    recomputed = policy.completion_logps(policy.model, inputs, ids, mask)
    assert torch.allclose(sampled, recomputed, atol=1e-4)


def test_a_priori_mode_uses_no_images(policy):
    policy.mode = "a-priori"
    texts, images = policy.render(_obs(1), with_images=False)
    assert images is None and "<|image_pad|>" not in texts[0]
    plan = policy.plan("a red circle", [0.0, 0.5])
    assert len(plan) == 2 and all(isinstance(p, str) and p for p in plan)


def test_save_and_load_round_trip(policy, tmp_path):
    policy.add_lora(r=4, alpha=8)
    torch.manual_seed(2)
    sample = policy.sample(_obs())
    ids, mask = pad_completions(sample.completions, policy.pad_token_id)
    before = policy.completion_logps(policy.model, policy.build_inputs(sample.texts, sample.images), ids, mask)
    policy.save_pretrained(tmp_path / "policy")
    loaded = MLLMAgent.from_pretrained(tmp_path / "policy", mode="a-priori")
    assert loaded.has_adapter and loaded.mode == "a-priori" and loaded.state_template == policy.state_template
    after = loaded.completion_logps(loaded.model, loaded.build_inputs(sample.texts, sample.images), ids, mask)
    assert torch.equal(before, after)


def test_invalid_settings(policy):
    with pytest.raises(ValueError, match="mode"):
        MLLMAgent(policy.model, policy.processor, mode="open")
    with pytest.raises(ValueError, match="temperature"):
        MLLMAgent(policy.model, policy.processor, temperature=0)

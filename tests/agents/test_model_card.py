"""Policies as shareable artefacts: save / load round trip with the model card, hub ids, push_to_hub (mocked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptloop_agents.policies.mllm import MLLMAgent
from promptloop_agents.policies.model_card import (
    AGENT_FILE,
    GENERATION_FILE,
    EvalRow,
    GenerationSettings,
    PolicyCard,
    read_card,
)
from promptloop_agents.policies.toy_policy import SHIPPED_POLICIES

CARD = PolicyCard(
    base_model="Qwen/Qwen2.5-VL-3B-Instruct",
    backbone="sd15",
    reward="imagereward",
    recipe="recipes/paper-sd15-imagereward.yaml",
    evaluation=[
        EvalRow("identity", "imagereward", 0.12, 0.05, 0.19, 200),
        EvalRow("promptloop", "imagereward", 0.31, 0.24, 0.38, 200),
    ],
    evaluation_protocol="200 held-out queries x 2 seeds, bootstrap 95% CI over queries.",
)
GENERATION = GenerationSettings(backbone="sd15", num_inference_steps=30, refine_schedule=[0, 6, 12, 18, 24])


def test_round_trip_with_model_card(policy, tmp_path):
    policy.image_size = 48  # the policy's own preview resize must survive (other code relies on it)
    policy.save_pretrained(tmp_path / "p", card=CARD, generation=GENERATION)
    files = {p.name for p in (tmp_path / "p").iterdir()}
    assert {"README.md", AGENT_FILE, GENERATION_FILE, "model.safetensors"} <= files
    text = (tmp_path / "p" / "README.md").read_text()
    assert text.startswith("---\n") and "base_model: Qwen/Qwen2.5-VL-3B-Instruct" in text
    assert "library_name: transformers" in text and "- promptloop" in text
    assert "| promptloop | 0.310 [0.240, 0.380] |" in text and "recipes/paper-sd15-imagereward.yaml" in text
    loaded = MLLMAgent.from_pretrained(tmp_path / "p")
    assert loaded.card == CARD and loaded.generation == GENERATION and loaded.image_size == 48
    assert read_card(tmp_path / "p")[0] == CARD
    loaded.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "README.md").read_text() == text


def test_lora_policy_card_says_peft(policy, tmp_path):
    policy.add_lora(r=2, alpha=4)
    policy.save_pretrained(tmp_path / "lora")
    assert "library_name: peft" in (tmp_path / "lora" / "README.md").read_text()
    assert "No held-out results were recorded" in (tmp_path / "lora" / "README.md").read_text()


def test_push_to_hub_uploads_the_saved_folder(policy, monkeypatch):
    """The upload cannot run here: huggingface_hub's API is mocked and what it would push is checked."""
    import huggingface_hub

    pushed: dict = {}

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        pushed.update(repo_id=repo_id, private=private, exist_ok=exist_ok)

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, **kwargs):
        folder = Path(folder_path)
        pushed["files"] = sorted(p.name for p in folder.iterdir())
        pushed["card"] = (folder / "README.md").read_text()
        pushed["message"] = commit_message
        return "commit-info"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert policy.push_to_hub("me/toy-policy", private=True, card=CARD) == "commit-info"
    assert pushed["repo_id"] == "me/toy-policy" and pushed["private"] is True and pushed["exist_ok"] is True
    assert {"README.md", AGENT_FILE, GENERATION_FILE, "model.safetensors"} <= set(pushed["files"])
    assert "backbone: sd15" in pushed["card"] and pushed["message"] == "Upload PromptLoop policy"


def test_from_pretrained_resolves_a_policy_hub_repo(policy, tmp_path, monkeypatch):
    import huggingface_hub

    policy.save_pretrained(tmp_path / "snapshot", card=CARD)
    asked = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name: asked.append((repo, name)))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo: str(tmp_path / "snapshot"))
    loaded = MLLMAgent.from_pretrained("me/toy-policy")
    assert asked == [("me/toy-policy", AGENT_FILE)] and loaded.card == CARD


@pytest.mark.parametrize("name", sorted(SHIPPED_POLICIES))
def test_shipped_policies_carry_cards(name):
    folder = SHIPPED_POLICIES[name]
    card, title = read_card(folder)
    settings = GenerationSettings.load(folder)
    assert card is not None and card.backbone == settings.backbone and title
    assert settings.preview_size == 64 and not settings.do_sample
    if name == "toy-compose":
        assert {row.backbone for row in card.evaluation} == {"toy-compose", "toy-compose-b"}
        assert all(row.ci_low <= row.mean <= row.ci_high for row in card.evaluation)

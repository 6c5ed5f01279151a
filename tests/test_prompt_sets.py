"""The prompt sets: shipped data with provenance, users' files with metadata, the stratified draw, the env and CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from promptloop_env.prompts import (
    DATA_SETS,
    PROMPT_SETS,
    PromptSet,
    load_prompts,
    metadata_for,
    read_prompt_file,
    resolve_prompts,
)
from promptloop_env.prompts.sets import DATA_DIR

SIZES = {"geneval": 553, "pickapic-train": 25432, "pickapic-test": 2048, "parti": 1632, "drawbench": 200}
CATEGORIES = {"geneval": 6, "pickapic-train": 0, "pickapic-test": 0, "parti": 12, "drawbench": 11}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_each_shipped_set_loads_with_its_size_categories_and_provenance(name):
    prompt_set = load_prompts(name)
    assert len(prompt_set) == SIZES[name] and len(prompt_set.category_counts()) == CATEGORIES[name]
    assert all(isinstance(q, str) and q == q.strip() and q for q in prompt_set)
    assert prompt_set.describe().startswith(f"{name}: {SIZES[name]} prompts")
    provenance = (DATA_DIR / "PROVENANCE.md").read_text()
    assert f"`{name}`" in provenance and DATA_SETS[name].file in provenance
    assert name in PROMPT_SETS


def test_every_data_file_is_named_in_setup_cfg_package_data():
    setup_cfg = (Path(__file__).parents[1] / "setup.cfg").read_text()
    assert "prompts/data/*" in setup_cfg
    assert {p.name for p in DATA_DIR.iterdir()} == {d.file for d in DATA_SETS.values()} | {"PROVENANCE.md"}


def test_geneval_exposes_its_metadata_and_the_train_and_test_pickapic_lists_are_disjoint():
    geneval = load_prompts("geneval")
    assert geneval.category_counts() == {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94,
                                         "position": 100, "color_attr": 100}  # fmt: skip
    i = geneval.prompts.index("a photo of a dog right of a teddy bear")
    assert geneval.metadata[i]["include"][1] == {"class": "dog", "count": 1, "position": ["right of", 0]}
    assert metadata_for("a photo of a dog right of a teddy bear")["tag"] == "position"
    assert set(load_prompts("pickapic-train")).isdisjoint(load_prompts("pickapic-test"))
    parti = load_prompts("parti")
    assert {"category", "challenge", "note"} <= set(parti.metadata[0])


def test_geneval_train_is_in_genevals_grammar_with_metadata_and_disjoint_from_its_evaluation_prompts():
    from promptloop_env.rewards.geneval_grammar import parse_prompt

    train = load_prompts("geneval-train")
    assert len(train) == 3856 and set(train).isdisjoint(load_prompts("geneval"))
    assert len(set(train)) == len(train)
    for prompt, meta in list(zip(train.prompts, train.metadata, strict=True))[::40]:
        assert parse_prompt(prompt).to_metadata() == {**meta}
    assert metadata_for(train[0])["tag"] == "two_object"


def test_the_draw_is_stratified_seeded_and_keeps_the_sets_order():
    parti = load_prompts("parti")
    draw = parti.draw(24, seed=3)
    assert len(draw) == 24 and set(draw.category_counts()) == set(parti.category_counts())  # every category
    assert draw.category_counts()["Animals"] > draw.category_counts()["Indoor Scenes"]  # in proportion
    assert draw == parti.draw(24, seed=3) and draw != parti.draw(24, seed=4)
    positions = [parti.prompts.index(q) for q in draw]
    assert positions == sorted(positions)
    assert parti.draw(0) is parti and parti.draw(10_000) is parti
    small = load_prompts("geneval", max_queries=5, seed=0)
    assert len(small) == 5 and len(small.category_counts()) == 5  # fewer than the categories: one each
    assert list(load_prompts("toy-compose-test", max_queries=7)) == list(load_prompts("toy-compose-test"))[:7]
    with pytest.raises(ValueError, match="max_queries"):
        parti.draw(-1)


def test_a_users_files_load_by_path_with_metadata(tmp_path):
    txt = tmp_path / "mine.txt"
    txt.write_text("a red apple\n\n  a blue cup  \n")
    assert list(load_prompts(str(txt))) == ["a red apple", "a blue cup"]
    jsonl = tmp_path / "mine.jsonl.gz"
    rows = [{"prompt": "a photo of a cat", "tag": "single_object", "include": [{"class": "cat", "count": 1}]},
            {"prompt": "a photo of a dog", "category": "animals"}]  # fmt: skip
    jsonl.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    mine = load_prompts(jsonl)
    assert mine.categories == ("single_object", "animals") and mine.metadata[0]["include"][0]["class"] == "cat"
    assert metadata_for("a photo of a cat")["tag"] == "single_object"
    csv_file = tmp_path / "mine.csv"
    csv_file.write_text("Prompt,Category\nA red colored car.,Colors\n")
    assert read_prompt_file(csv_file).categories == ("Colors",)


@pytest.mark.parametrize(
    ("content", "suffix", "match"),
    [
        ('{"text": "no prompt field"}\n', ".jsonl", r"mine\.jsonl:1: each line needs a non-empty \"prompt\""),
        ("not json\n", ".jsonl", r"mine\.jsonl:1: not a JSON object"),
        ("\n\n", ".txt", "holds no prompts"),
        ("a,b\n1,2\n", ".csv", "needs a prompt column"),
        ("x", ".yaml", r"\.txt, \.jsonl, \.csv or \.tsv"),
    ],
)
def test_bad_files_are_refused_with_the_line_or_the_fix(tmp_path, content, suffix, match):
    path = tmp_path / f"mine{suffix}"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_prompts(str(path))


def test_an_unknown_name_or_missing_file_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"Unknown prompt set 'genevall'.*geneval"):
        load_prompts("genevall")
    with pytest.raises(ValueError, match=r"No prompt file 'nowhere/mine\.txt'.*drawbench"):
        load_prompts("nowhere/mine.txt")


def test_the_env_and_the_cli_loader_take_a_set_name_or_a_path(tmp_path):
    from promptloop_agents.rollout import load_queries

    assert len(resolve_prompts("drawbench", None)) == 200
    path = tmp_path / "q.txt"
    path.write_text("a photo of a cat\n")
    assert resolve_prompts(str(path), None) == ("a photo of a cat",)
    assert load_queries(str(path)) == ["a photo of a cat"]
    assert load_queries("geneval", max_queries=12, seed=0) == list(load_prompts("geneval").draw(12, seed=0))
    assert isinstance(load_prompts("simple-animals"), PromptSet)


def test_gym_make_takes_a_shipped_set_by_name():
    import gymnasium as gym

    import promptloop_env  # noqa: F401

    env = gym.make("PromptLoop-v0", backbone="tiny", reward="jpeg-incompressibility", prompts="parti",
                   num_inference_steps=2, num_refinements=1, preview="none", device="cpu")  # fmt: skip
    _, info = env.reset(seed=0)
    assert info["query"] in set(load_prompts("parti"))
    env.close()


@pytest.mark.parametrize(
    ("recipe", "train", "held_out"),
    [
        ("paper-sd15-imagereward", "pickapic-train", "pickapic-test"),
        ("sdxl-imagereward", "pickapic-train", "pickapic-test"),
        ("flux-schnell-pickscore", "pickapic-train", "pickapic-test"),
        ("paper-sd15-geneval", "geneval-train", "geneval"),
    ],
)
def test_the_gpu_recipes_train_and_evaluate_on_the_real_sets(recipe, train, held_out):
    from promptloop_agents.cli.main import parse_args
    from promptloop_agents.configs import config_from_args, config_sections

    path = Path(__file__).parents[1] / "recipes" / f"{recipe}.yaml"
    assert "Expects:" in path.read_text()
    args = parse_args(["train", "--config", str(path)])
    env, _, grpo = (config_from_args(config_sections()[s], args) for s in ("env", "policy", "grpo"))
    assert (grpo.train_prompts, grpo.eval_prompts) == (train, held_out)
    assert {train, held_out} <= set(PROMPT_SETS)
    if recipe == "paper-sd15-geneval":
        assert (env.backbone, env.reward) == ("sd15", "geneval") and "geneval" in grpo.eval_metrics

"""``promptloop eval``: agent specs, the same episodes for every agent, paired differences, the blank control,
the reports (eval.json, eval.md, sample grids)."""

import dataclasses
import json

import numpy as np
import pytest

from promptloop_agents.cli.evaluate import evaluate_from_configs
from promptloop_agents.cli.main import main
from promptloop_agents.configs import EnvConfig
from promptloop_agents.evaluation.agents import parse_agent_specs
from promptloop_agents.evaluation.eval_config import EvalConfig
from promptloop_agents.evaluation.harness import episode_seeds, run_agent, uses_previews
from promptloop_agents.evaluation.suite import run_evaluation
from promptloop_agents.policies.baselines import BlankPreviews, IdentityAgent
from promptloop_agents.policies.policy_config import PolicyConfig
from promptloop_agents.rollout import make_vector_env

TINY = EnvConfig(
    backbone="tiny", reward="jpeg-incompressibility", num_inference_steps=4, num_refinements=2, preview_size=32
)


@pytest.fixture
def queries_file(tmp_path, queries):
    path = tmp_path / "queries.txt"
    path.write_text("\n".join(queries[:3]))
    return str(path)


def eval_config(tmp_path, queries_file, agents, **overrides):
    settings = dict(
        output_dir=str(tmp_path / "eval"),
        device="cpu",
        eval_prompts=queries_file,
        seeds_per_query=2,
        metrics="jpeg-incompressibility",
        agents=agents,
        num_envs=4,
        progress=False,
        sample_queries=2,
    )
    return EvalConfig(**{**settings, **overrides})


class RecordingAgent:
    """Writes the query and keeps every preview it was shown."""

    uses_previews = True

    def __init__(self):
        self.seen = []

    def reset(self, seed=None):
        pass

    def act(self, observation):
        self.seen.append(np.asarray(observation["image"]).copy())
        return str(observation["query"])


def test_the_same_agent_twice_gives_the_same_episodes_and_zero_differences(tmp_path, queries_file):
    config = eval_config(tmp_path, queries_file, "identity,again=identity,static")
    results = evaluate_from_configs(TINY, PolicyConfig(), config)["tiny"]
    assert [e.seed for e in results["identity"].episodes] == [e.seed for e in results["static"].episodes]
    assert [e.seed for e in results["identity"].episodes] == episode_seeds(3, 2, config.seed).ravel().tolist()
    for a, b in zip(results["identity"].episodes, results["again"].episodes, strict=True):
        np.testing.assert_array_equal(a.final_image, b.final_image)
    np.testing.assert_array_equal(
        results["identity"].scores["jpeg-incompressibility"], results["again"].scores["jpeg-incompressibility"]
    )

    out = tmp_path / "eval"
    report = json.loads((out / "eval.json").read_text())
    part = report["backbones"]["tiny"]
    same = part["vs_baseline"]["again"]["jpeg-incompressibility"]
    assert (same["mean"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    assert set(part["paired"]["jpeg-incompressibility"]) == {"identity - again", "identity - static", "again - static"}
    assert part["agents"]["static"]["metrics"]["jpeg-incompressibility"]["n"] == 3  # a query is the unit
    assert np.asarray(part["episodes"]["static"]["scores"]["jpeg-incompressibility"]).shape == (3, 2)
    assert report["seeds"] == episode_seeds(3, 2, config.seed).tolist()
    table = (out / "eval.md").read_text()
    assert "| static |" in table and "jpeg-incompressibility - identity" in table
    assert (out / part["samples"]["path"]).exists() and (out / "metrics.json").exists()

    # Adding an agent changes no episode of the others.
    more = evaluate_from_configs(TINY, PolicyConfig(), eval_config(tmp_path, queries_file, "random,identity"))
    np.testing.assert_array_equal(
        more["tiny"]["identity"].scores["jpeg-incompressibility"], results["identity"].scores["jpeg-incompressibility"]
    )


def test_policy_folders_in_every_mode(tmp_path, queries_file, policy):
    policy.save_pretrained(tmp_path / "policy")
    path = str(tmp_path / "policy")
    specs = f"{path},prior={path}:a-priori,blind={path}:blank"
    config = eval_config(tmp_path, queries_file, specs, seeds_per_query=1)
    env = dataclasses.replace(TINY, backbone="tiny,tiny")  # two backbones, results keyed by backbone
    results = evaluate_from_configs(env, PolicyConfig(max_new_tokens=4), config)
    assert list(results) == ["tiny"]  # the same backbone twice is one
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert list(report["backbones"]["tiny"]["agents"]) == [path, "prior", "blind"]
    agents = results["tiny"]
    assert all(len(e.prompts) == 2 for r in agents.values() for e in r.episodes)
    prior = parse_agent_specs(f"prior={path}:a-priori")[0]
    assert (prior.mode, prior.policy_path) == ("a-priori", path)


def test_blank_previews_change_what_the_agent_sees_not_its_calls(env_kwargs, queries):
    envs = make_vector_env(4, refine_schedule="uniform", **env_kwargs)
    seeds = [0, 1, 2, 3]
    plain, wrapped = RecordingAgent(), RecordingAgent()
    run_agent("plain", plain, envs, queries, seeds, {})
    run_agent("blank", BlankPreviews(wrapped, value=7), envs, queries, seeds, {})
    envs.close()
    assert len(plain.seen) == len(wrapped.seen) == 4 * 2
    assert all((image == 7).all() for image in wrapped.seen)
    assert all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(plain.seen, wrapped.seen, strict=True))
    assert not all((image == image.flat[0]).all() for image in plain.seen)
    assert uses_previews(BlankPreviews(IdentityAgent())) and not uses_previews(IdentityAgent())


def test_agents_without_previews_get_the_same_final_images(env_kwargs, queries):
    finals = {}
    for preview in ("vae", "none"):
        envs = make_vector_env(4, refine_schedule="uniform", **{**env_kwargs, "preview": preview})
        result = run_agent(preview, IdentityAgent(), envs, queries, [5, 6, 7, 8], {})
        envs.close()
        finals[preview] = np.stack([e.final_image for e in result.episodes])
    np.testing.assert_array_equal(finals["vae"], finals["none"])


@pytest.mark.parametrize(
    ("agents", "message"),
    [
        ("identity,no/such/folder", "Unknown agent 'no/such/folder'"),
        ("identity:blank", "takes no mode"),
        ("oracle:blank", "but 'best-static'"),
        ("teacher:blank", "but 'keep', 'oracle', 'corrective'"),
        ("identity,identity", "unique"),
        ("policy", "needs --policy"),
        ("", "empty"),
    ],
)
def test_bad_agent_specs_are_refused_with_a_clear_message(agents, message):
    with pytest.raises(ValueError, match=message):
        parse_agent_specs(agents)


def test_teacher_rule_modes_apply_one_rule_set_everywhere():
    from promptloop_agents.evaluation.agents import build_agent
    from promptloop_agents.evaluation.eval_config import EvalConfig
    from promptloop_env.toy.compose import CATEGORIES

    (spec,) = parse_agent_specs("corrective=teacher:corrective")
    teacher = build_agent(spec, EvalConfig(), {}, best_static=dict)
    assert teacher.rules == dict.fromkeys(CATEGORIES, "corrective") and teacher.min_timestep == 0.0
    (default,) = parse_agent_specs("teacher")
    assert build_agent(default, EvalConfig(), {}, best_static=dict).min_timestep == 0.35


def test_bad_policy_mode_and_the_command_line_error(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    with pytest.raises(ValueError, match="unknown policy mode 'sideways'"):
        parse_agent_specs(f"{tmp_path / 'p'}:sideways")
    assert main(["eval", "--backbone", "tiny", "--agents", "identity,nope", "--output-dir", str(tmp_path / "e")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("promptloop eval: error: Unknown agent 'nope'") and "\n" not in error


def test_toy_compose_best_static_and_oracle_with_categories(tmp_path):
    env = EnvConfig(
        backbone="toy-compose", reward="toy-compose", num_inference_steps=4, num_refinements=2, preview_size=32
    )
    queries = tmp_path / "q.txt"
    queries.write_text("two red circles\na blue square above a green triangle\n")
    config = eval_config(
        tmp_path,
        str(queries),
        "identity,caption,best-static,oracle:best-static",
        seeds_per_query=1,
        metrics="toy-compose,toy-compose-soft",
        select_seeds=1,
        eval_prompts=str(queries),
    )
    run = run_evaluation(env, config, {"identity": IdentityAgent()})  # ready-made agents (the demo's way)
    assert list(run) == ["identity"]
    evaluate_from_configs(env, PolicyConfig(), config)
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    part = report["backbones"]["toy-compose"]
    assert report["categories"] == ["counting", "position"]
    assert set(part["agents"]["oracle:best-static"]["metrics"]["toy-compose"]["by_category"]) == {
        "counting",
        "position",
    }
    assert set(part["best_static"]) == {"two red circles", "a blue square above a green triangle"}
    assert "per category" in (tmp_path / "eval" / "eval.md").read_text()

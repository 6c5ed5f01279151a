"""The one registry mechanism: every pluggable thing is a ``Registry`` filled where its entries are defined."""

from __future__ import annotations

from pathlib import Path

import pytest

import promptloop_env  # noqa: F401  (registers the toy worlds)
from promptloop_env.backbones import BACKBONES, FAMILIES, HubModel
from promptloop_env.previews import PREVIEWS
from promptloop_env.prompts import PROMPT_SETS, resolve_prompts
from promptloop_env.registry import Registry, UnknownNameError
from promptloop_env.rewards import REWARDS, make_reward


def test_every_registry_is_one_mechanism_with_one_error():
    for registry, kind in [
        (BACKBONES, "backbone"),
        (FAMILIES, "backbone family"),
        (REWARDS, "reward"),
        (PREVIEWS, "preview"),
        (PROMPT_SETS, "prompt set"),
    ]:
        assert isinstance(registry, Registry)
        with pytest.raises(UnknownNameError, match=f"Unknown {kind} 'nope'. Valid names: ") as err:
            registry["nope"]
        assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


def test_toy_worlds_register_their_own_entries():
    assert {"toy-shapes", "toy-compose"} <= set(BACKBONES)
    assert {"toy-fidelity", "toy-aesthetic", "toy-compose", "toy-compose-soft"} <= set(REWARDS)
    assert {"toy-train", "toy-user-test", "toy-compose-train", "toy-compose-test"} <= set(PROMPT_SETS)
    assert {"sd", "sdxl", "sd3", "flux"} <= set(FAMILIES)  # discovered: each family module registers itself


def test_register_as_decorator_and_call_then_use_by_name():
    @REWARDS.register("test-constant")
    def constant(**kwargs):
        return lambda images, queries: [0.5] * len(queries)

    PROMPT_SETS.register("test-set", ["a red circle"])
    try:
        assert make_reward("test-constant")(None, ["q"]).tolist() == [0.5]
        assert resolve_prompts("test-set", None) == ("a red circle",)
        with pytest.raises(ValueError, match="already registered"):
            REWARDS.register("test-constant", lambda **kwargs: None)
    finally:
        REWARDS.unregister("test-constant")
        PROMPT_SETS.unregister("test-set")
    assert "test-constant" not in REWARDS


def test_registering_the_same_entry_twice_is_fine():
    registry = Registry("thing")
    entry = HubModel("me/model")
    registry.register("a", entry)
    registry.register("a", HubModel("me/model"))  # equal entry: a module imported twice
    with pytest.raises(TypeError, match="non-empty str"):
        registry.register("", entry)


DOCS = Path(__file__).resolve().parents[1] / "docs" / "env.md"


def test_the_env_page_lists_every_argument_and_its_plug_in_example_runs():
    import dataclasses
    import re

    import gymnasium as gym

    from promptloop_env.config import PromptLoopConfig

    text = DOCS.read_text()
    for f in dataclasses.fields(PromptLoopConfig):
        assert f"`{f.name}`" in text, f.name
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "REWARDS.register" in b]
    block = block.replace('backbone="my-sd"', 'backbone="tiny"').replace("env = gym.make(", "env = make(")
    namespace = {"make": lambda *a, **k: gym.make(*a, **k, num_inference_steps=2, num_refinements=1)}
    try:
        exec(block, namespace)  # noqa: S102  (our own documentation)
        env = namespace["env"]
        env.reset(seed=0, options={"query": "a red circle"})
        reward = env.step("a red circle")[1]
        assert 0.0 <= reward <= 1.0 and env.unwrapped.core.preview == "grey"
    finally:
        for registry, name in ((BACKBONES, "my-sd"), (REWARDS, "redness"), (PREVIEWS, "grey")):
            registry.unregister(name)


def test_installed_plugins_register_at_import(monkeypatch):
    import importlib.metadata

    from promptloop_env.registry import load_plugins

    class Point:
        def __init__(self, name, target):
            self.name, self.value, self._target = name, f"tests:{name}", target

        def load(self):
            if isinstance(self._target, Exception):
                raise self._target
            return self._target

    points = [
        Point("good", lambda: PROMPT_SETS.register("plugin-set", ["a red circle"])),
        Point("broken", ImportError("no module")),
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points)
    try:
        with pytest.warns(UserWarning, match="plugin 'broken'.*failed"):
            assert load_plugins() == ["good"]
        assert resolve_prompts("plugin-set", None) == ("a red circle",)
    finally:
        PROMPT_SETS.unregister("plugin-set")

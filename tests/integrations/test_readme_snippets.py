"""The README's "Use it from your trainer" snippets run as written (with fewer denoising steps and timesteps)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Use it from your trainer"
# Per snippet: (text in the README, what the test runs instead); each must be found, so the test follows the README.
CHEAPER = {
    "Gymnasium": [("num_inference_steps=10", "num_inference_steps=5")],
    "stable-baselines3": [
        ("num_inference_steps=10", "num_inference_steps=4"),
        ("total_timesteps=128", "total_timesteps=64"),
    ],
    "TorchRL": [("num_inference_steps=10", "num_inference_steps=4")],
    "TRL": [],
    "OpenEnv": [],
}


def snippets() -> dict[str, str]:
    """The section's python blocks, keyed by the bold name of the paragraph before each."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    blocks = {}
    for match in re.finditer(r"```python\n(.*?)```", section, flags=re.S):
        name = re.findall(r"\*\*([^*]+)\*\*", section[: match.start()])[-1]
        blocks[name] = match.group(1)
    return blocks


def cheaper(name: str, code: str) -> str:
    for old, new in CHEAPER[name]:
        assert old in code, f"the README's {name} snippet no longer contains {old!r}: update CHEAPER"
        code = code.replace(old, new)
    return code


def test_the_section_has_a_snippet_per_trainer():
    assert list(snippets()) == list(CHEAPER)


@pytest.mark.parametrize("name", ["Gymnasium", "stable-baselines3", "TorchRL", "TRL"])
def test_snippet_runs(name, monkeypatch):
    pytest.importorskip({"Gymnasium": "gymnasium", "stable-baselines3": "stable_baselines3"}.get(name, name.lower()))
    monkeypatch.chdir(ROOT)  # the TRL snippet imports the example from examples/
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(compile(cheaper(name, snippets()[name]), f"README:{name}", "exec"), {"__name__": "readme_snippet"})


def test_openenv_snippet_runs_against_a_local_server():
    pytest.importorskip("openenv")
    pytest.importorskip("uvicorn")
    from test_openenv import serve_app

    from promptloop_env.integrations.openenv import create_promptloop_app

    code = snippets()["OpenEnv"]
    command = re.search(r"python -m promptloop_env\.integrations\.openenv --port 8000 (.*)\n", code).group(1)
    flags = {"reward": "toy-fidelity"}  # the command line's default
    flags |= {k.replace("-", "_"): v for k, v in re.findall(r"--([\w-]+) (\S+)", command)}
    with serve_app(create_promptloop_app(**flags)) as url:
        assert "http://127.0.0.1:8000" in code
        exec(compile(code.replace("http://127.0.0.1:8000", url), "README:OpenEnv", "exec"), {"__name__": "snippet"})

"""Fixtures of the benchmark-script tests: the research scripts are no package, so they load by path."""

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1]


@pytest.fixture(scope="session")
def benchmark_script():
    """``benchmark_script("compose_learner")``: the module of ``benchmarks/compose_learner.py``, loaded once."""
    loaded = {}

    def load(name: str):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]

    return load

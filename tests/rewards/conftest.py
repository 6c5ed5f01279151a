"""Fixtures of the reward tests: tiny stand-in checkpoints, written once per session to a temp folder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from promptloop_env.testing import STANDIN_BUILDERS, sample_images


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """``standin(name)``: constructor keywords that load reward ``name``'s stand-in offline (built once)."""
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            cache[name] = {**STANDIN_BUILDERS[name](str(folder)), "local_files_only": True}
        return cache[name]

    return get


@pytest.fixture
def images() -> np.ndarray:
    """Three different ``uint8 [48, 48, 3]`` images."""
    return sample_images(3)

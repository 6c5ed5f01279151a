"""Fixtures of the shipped toy models' tests: loading with the network refused, and the recorded rollout slices."""

from __future__ import annotations

import json
import socket
import weakref
from pathlib import Path

import numpy as np
import pytest

from promptloop_env import backbones

RECORDED_SLICES = json.loads(Path(__file__).with_name("recorded_slices.json").read_text())
SLICE_TOLERANCE = 2  # grey levels: other BLAS builds than the recording's may differ by one or two


@pytest.fixture
def offline_fresh_load(monkeypatch):
    """Refuse every network connection and forget loaded pipelines, so a backbone loads afresh from disk."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted while loading the toy world")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(backbones, "_LOADED", weakref.WeakValueDictionary())


@pytest.fixture
def assert_recorded_slices():
    """``check(world, preview, final)``: the two 3x3 regions of each image match ``recorded_slices.json``."""

    def check(world: str, preview: np.ndarray, final: np.ndarray) -> None:
        recorded = RECORDED_SLICES[world]
        for image, key in ((preview, "preview"), (final, "final")):
            pixels = np.concatenate([image[r0:r1, c0:c1] for r0, r1, c0, c1 in recorded["regions"]])
            np.testing.assert_allclose(pixels.reshape(-1).astype(int), recorded[key], atol=SLICE_TOLERANCE)

    return check

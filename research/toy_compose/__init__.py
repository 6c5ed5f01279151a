"""Research on the ``toy-compose`` world: does a look at the previews beat the best prompt written up front?

Not installed with the package and never imported by it: run the scripts here from the repository root
(``python research/toy_compose/NAME.py --help``). ``NOTES.md`` is the report, ``results/`` its data.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODELS = HERE / "models"
EXPERIMENT_BACKBONES = {name: MODELS / name for name in ("toy-compose-b", "toy-compose-tuned")}
"""The two experiment models (rebuilt by ``rebuild_models.py``); ``backbone=`` takes their folder."""
TOY_GUIDANCE = 1.0
"""The toy worlds' guidance scale: a registered toy backbone defaults to it, a folder to its family's (7.5)."""


def backbone_source(name: str) -> str:
    """The ``backbone=`` of ``name``: an experiment model's folder, anything else unchanged.

    >>> backbone_source("toy-compose-b").endswith("research/toy_compose/models/toy-compose-b")
    True
    >>> backbone_source("toy-compose")
    'toy-compose'
    """
    return str(EXPERIMENT_BACKBONES[name]) if name in EXPERIMENT_BACKBONES else name


def benchmark_script(name: str) -> ModuleType:
    """The module of the product benchmark ``benchmarks/NAME.py`` (a script folder, not a package), loaded once."""
    key = f"benchmarks.{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]

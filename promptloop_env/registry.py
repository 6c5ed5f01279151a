"""Name -> factory registries, resolved lazily so that optional dependencies are imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def resolve(target: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute.

    >>> resolve("math:pi") > 3
    True
    """
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def lookup(registry: Mapping[str, Any], name: str, kind: str) -> Any:
    """Return ``registry[name]`` or raise a ``ValueError`` that lists the valid names."""
    if name not in registry:
        valid = ", ".join(sorted(registry))
        raise ValueError(f"Unknown {kind} {name!r}. Valid names: {valid}.")
    return registry[name]

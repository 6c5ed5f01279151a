"""Finding weights: the one ``MissingWeightsError`` of backbones and rewards, and whether the hub may be reached.

Backbones and model-based rewards load the same way: local folders and the hub cache first, with no network;
the hub only when something is missing there, neither ``local_files_only`` nor ``HF_HUB_OFFLINE`` forbids it and
one short request shows it answers. Whatever is still missing is one :class:`MissingWeightsError` that names what
was looked for, where, and the command that fetches it, raised within seconds and before any compute.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class MissingWeightsError(FileNotFoundError):
    """A model's weights are neither in the given folders nor in the hub cache, and cannot be fetched."""


def hub_offline() -> bool:
    """Whether the hub must not be reached: ``HF_HUB_OFFLINE`` set now, or when huggingface_hub was imported."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached (one request, no retries), or ``None`` when it answers.

    huggingface_hub retries a failed download for about 20 seconds; this answers in ``timeout`` at most.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as err:  # noqa: BLE001  (any transport error means the same: no hub)
        return f"{constants.ENDPOINT} cannot be reached ({type(err).__name__}: {err})"
    return None


def hub_cache() -> str:
    """The hub cache folder that ``from_pretrained`` looks in."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return "the Hugging Face hub cache"
    return str(constants.HF_HUB_CACHE)


def load_cache_first(
    load: Callable[[bool], T], local_files_only: bool, missing: Callable[[OSError, bool], MissingWeightsError]
) -> T:
    """``load(True)`` (cache only), else ``load(False)`` where the hub is allowed and reachable, else ``missing``.

    Args:
        load: loads the weights; takes ``local_files_only`` and raises ``OSError`` when something is missing.
        local_files_only: never reach the hub.
        missing: ``missing(cause, offline)``, the error to raise given the last cause and whether the hub was off
            limits.
    """
    try:
        return load(True)
    except OSError as err:
        if local_files_only or hub_offline():
            raise missing(err, True) from err
        if (unreachable := hub_unreachable()) is not None:
            raise missing(OSError(f"not in the hub cache, and {unreachable}"), False) from err
        try:
            return load(False)
        except OSError as second:
            raise missing(second, False) from second

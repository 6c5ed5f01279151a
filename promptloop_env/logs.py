"""Quiet model loading: the libraries' loading bars and chatter only when asked, the user's settings restored.

diffusers and transformers print while pipelines load ("Loading pipeline components" bars, transformers'
"requires torchvision (not installed); falling back to ..." warnings when diffusers' pipelines are imported) and
while prompts are encoded (diffusers logs the cut part of every prompt longer than the text encoder's window,
at every step; the env reports it once, in ``info["prompt_truncated"]`` and one warning). :func:`quiet_loading`
silences them for the duration of a block and then puts back exactly what the user had: the two libraries'
logger levels and progress-bar switches. Nothing else of the logging configuration is touched.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LIBRARIES = ("diffusers", "transformers")
"""The libraries whose loggers and progress bars :func:`quiet_loading` silences."""


def _progress_switches(library: str) -> tuple | None:
    """``(is_enabled, enable, disable)`` of ``library``'s progress bars (None if it is not installed).

    Importing ``<library>.utils.logging`` also configures the library's root logger, which it would otherwise do
    (resetting its level) the first time it logs, inside the block.
    """
    try:
        module = importlib.import_module(f"{library}.utils.logging")
    except ImportError:
        return None
    module.get_verbosity()
    return module.is_progress_bar_enabled, module.enable_progress_bar, module.disable_progress_bar


@contextmanager
def quiet_loggers(level: int = logging.ERROR) -> Iterator[None]:
    """Within the block, diffusers' and transformers' log records below ``level`` are dropped.

    Only the two libraries' own loggers (standard ``logging`` loggers named after them) change, and their levels
    are set back when the block ends. Cheap enough to wrap every prompt encoding.
    """
    loggers = [logging.getLogger(name) for name in LIBRARIES]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(max(level, logger.getEffectiveLevel()))
        yield
    finally:
        for logger, old in zip(loggers, levels, strict=True):
            logger.setLevel(old)


@contextmanager
def quiet_loading(progress: bool = False, level: int = logging.ERROR) -> Iterator[None]:
    """Within the block, diffusers' and transformers' messages below ``level`` and their progress bars are off.

    Args:
        progress: True leaves everything as it is (the env's ``progress=True``).
        level: the lowest level still shown.

    The libraries' logger levels and progress-bar switches are set back to what they were when the block ends,
    and so are the warning filters (huggingface_hub's ``local_dir_use_symlinks`` deprecation, which diffusers
    triggers at every hub lookup, is ignored inside).
    """
    if progress:
        yield
        return
    switches = [_progress_switches(name) for name in LIBRARIES]  # first: it configures the libraries' loggers
    enabled = [s[0]() if s else None for s in switches]
    with warnings.catch_warnings(), quiet_loggers(level):
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*", category=UserWarning)
        try:
            for s in switches:
                if s:
                    s[2]()
            yield
        finally:
            for s, was in zip(switches, enabled, strict=True):
                if s and was:
                    s[1]()

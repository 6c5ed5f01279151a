"""Argument validators of the envs: each raises a ``TypeError`` or ``ValueError`` that says what is expected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

RESET_OPTIONS = ("query", "noise_seed")
"""Keys of ``reset(options=...)`` understood by the envs."""

RENDER_MODES = ("rgb_array",)
"""Render modes of the envs besides None."""


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an int; ``TypeError`` unless it is an int (not a bool), ``ValueError`` below ``minimum``.

    >>> check_int("num_envs", 2, 1)
    2
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}.")
    return int(value)


def check_reset_options(options: Mapping[str, Any] | None, extra: Sequence[str] = ()) -> dict[str, Any]:
    """A copy of ``options``; raises ``ValueError`` naming the valid keys when one is unknown."""
    options = dict(options or {})
    valid = (*RESET_OPTIONS, *extra)
    unknown = set(options) - set(valid)
    if unknown:
        raise ValueError(f"Unknown reset options {sorted(unknown)}; valid: {', '.join(repr(k) for k in valid)}.")
    return options


def check_action(action: Any) -> str:
    """Return ``action`` if it is a ``str``; otherwise raise a ``TypeError`` that says what an action is."""
    if not isinstance(action, str):
        raise TypeError(
            f"The action must be a str (the complete prompt); got {type(action).__name__}: {action!r:.80}."
        )
    return action


def check_render_mode(render_mode: str | None) -> str | None:
    """Return ``render_mode`` if it is None or one of :data:`RENDER_MODES`."""
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be None or 'rgb_array'; got {render_mode!r}.")
    return render_mode


def check_optional_str(name: str, value: Any) -> str | None:
    """Return ``value`` if it is a ``str`` or None."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None; got {type(value).__name__}.")
    return value


def as_torch_dtype(torch_dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A ``torch.dtype`` from a dtype, its name (``"float16"``, ``"torch.bfloat16"``) or None.

    >>> as_torch_dtype("torch.bfloat16")
    torch.bfloat16
    """
    if torch_dtype is None or isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    dtype = getattr(torch, str(torch_dtype).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"torch_dtype must be a torch.dtype or its name (e.g. 'float16'); got {torch_dtype!r}.")
    return dtype


def check_cpu_offload(cpu_offload: bool, device: str | torch.device | None) -> bool:
    """Return ``cpu_offload`` if it can be honoured: offloading moves each model to an accelerator for its turn.

    Raises:
        ValueError: ``cpu_offload=True`` on a machine without an accelerator, or with ``device="cpu"``.
    """
    if not isinstance(cpu_offload, bool):
        raise TypeError(f"cpu_offload must be a bool; got {type(cpu_offload).__name__}.")
    if not cpu_offload:
        return False
    if not torch.accelerator.is_available():
        raise ValueError(
            "cpu_offload=True keeps each model on the CPU until its turn on an accelerator (diffusers' "
            "enable_model_cpu_offload), but torch sees no accelerator here (CUDA, XPU, MPS, ...). Drop cpu_offload "
            "to run everything on the CPU, or run on a machine with an accelerator."
        )
    if device is not None and torch.device(device).type == "cpu":
        raise ValueError(
            "cpu_offload=True runs each model on the accelerator in turn; it cannot be combined with device='cpu'. "
            "Leave device=None (offloading picks the accelerator) or drop cpu_offload."
        )
    return True

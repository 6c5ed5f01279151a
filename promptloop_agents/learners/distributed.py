"""What the trainer needs from accelerate's engines (DDP, FSDP, DeepSpeed ZeRO): nothing home-made.

- :func:`make_accelerator`: the ``Accelerator`` (engine chosen by ``accelerate launch --config_file
  recipes/accelerate/<engine>.yaml``), with trackers.
- :func:`unwrap_for_generation`: the model to call ``generate`` on, with full parameters under ZeRO-3 and
  FSDP (gathered for the duration of the block, as TRL's ``unwrap_model_for_generation`` does).
- :func:`is_sharded`: whether parameters or optimiser state are sharded, so that checkpoints go through
  ``accelerator.save_state`` (one shard per rank) instead of one file written by rank 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from gymnasium.error import DependencyNotInstalled

KNOWN_TRACKERS = ("tensorboard", "wandb", "trackio")


def make_accelerator(report_to: str = "", project_dir: str | None = None) -> Any:
    """The ``accelerate.Accelerator`` of a run: its GPU when there is one, CPU (gloo when multi-process) otherwise.

    Args:
        report_to: comma-separated trackers (``tensorboard``, ``wandb``, ``trackio``) or ``all`` (those
            installed); ``""`` for none. A named tracker that is not installed is an error.
        project_dir: where file-based trackers (TensorBoard) write.
    """
    try:
        from accelerate import Accelerator
    except ImportError as err:
        raise DependencyNotInstalled('Training needs accelerate and peft: pip install "promptloop[agents]"') from err
    trackers = resolve_trackers(report_to)
    return Accelerator(cpu=not torch.cuda.is_available(), log_with=trackers or None, project_dir=project_dir)


def resolve_trackers(report_to: str) -> list[str]:
    """Tracker names from ``report_to``; ``all`` means every installed one."""
    from accelerate.utils import is_tensorboard_available, is_trackio_available, is_wandb_available

    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available, "trackio": is_trackio_available}
    names = [n.strip() for n in report_to.split(",") if n.strip() and n.strip() != "none"]
    if names == ["all"]:
        return [n for n in KNOWN_TRACKERS if available[n]()]
    for name in names:
        if name not in available:
            raise ValueError(f"Unknown tracker {name!r}; valid: {', '.join(KNOWN_TRACKERS)}, all.")
        if not available[name]():
            raise DependencyNotInstalled(f"report_to={name!r} needs the {name} package: pip install {name}")
    return names


def engine(accelerator: Any) -> str:
    """``"deepspeed"``, ``"fsdp"`` or ``"ddp"`` (also for a single process)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return "deepspeed"
    if accelerator.distributed_type == DistributedType.FSDP:
        return "fsdp"
    return "ddp"


def is_sharded(accelerator: Any) -> bool:
    """Whether each rank holds only part of the parameters or optimiser state (FSDP, DeepSpeed ZeRO)."""
    return engine(accelerator) in ("deepspeed", "fsdp")


@contextlib.contextmanager
def unwrap_for_generation(model: Any, accelerator: Any) -> Iterator[Any]:
    """The model to ``generate`` with, its full parameters available inside the block.

    DDP: the unwrapped module. DeepSpeed ZeRO-3: parameters gathered with ``deepspeed.zero.GatheredParameters``.
    FSDP: ``FullyShardedDataParallel.summon_full_params`` (FSDP1) or ``unshard()`` / ``reshard()`` (FSDP2).
    Parameters are not written back: generation does not change them.
    """
    unwrapped = accelerator.unwrap_model(model)
    kind = engine(accelerator)
    if kind == "deepspeed" and accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            yield unwrapped
    elif kind == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel

        if isinstance(model, FullyShardedDataParallel):
            with FullyShardedDataParallel.summon_full_params(model, recurse=True, writeback=False):
                yield unwrapped
        else:  # FSDP2: fully_shard modules unshard on demand
            model.unshard()
            try:
                yield unwrapped
            finally:
                model.reshard()
    else:
        yield unwrapped


def trainable_state_dict(model: Any, accelerator: Any) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (full tensors; gathered to every rank's CPU under FSDP / ZeRO-3)."""
    names = {name for name, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
    if is_sharded(accelerator):
        state = accelerator.get_state_dict(model)
    else:
        state = accelerator.unwrap_model(model).state_dict()
    return {name: value for name, value in state.items() if name in names}

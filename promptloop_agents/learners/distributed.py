"""What the trainer needs from accelerate's engines (DDP, FSDP, DeepSpeed ZeRO): nothing home-made.

- :func:`make_accelerator`: the ``Accelerator`` (engine chosen by ``accelerate launch --config_file
  recipes/accelerate/<engine>.yaml``), with trackers.
- :func:`unwrap_for_generation`: the model to call ``generate`` on (rollouts and held-out evaluation), gathered
  as TRL's ``unwrap_model_for_generation`` gathers it under ZeRO-3 and FSDP.
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
    """``"deepspeed"``, ``"fsdp"`` or ``"ddp"`` (also for a single process and for gloo on CPU)."""
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
    """The model to ``generate`` with (rollouts and held-out evaluation), gathered as TRL gathers it.

    One context for every engine, as TRL's ``unwrap_model_for_generation``:

    - DeepSpeed ZeRO-3: every parameter gathered once (``deepspeed.zero.GatheredParameters``) and DeepSpeed's
      forward hooks removed for the block, so that decoding does not re-gather layers at every token; the hooks
      are put back afterwards.
    - FSDP1: the root's own parameters (embeddings, head) gathered with ``summon_full_params(recurse=False)``;
      the wrapped layers gather themselves in their forward (``recurse=True`` around a forward is unsupported).
    - FSDP2 (``fully_shard``): the root's parameter group unsharded (``unshard()`` is not recursive), so code that
      ``generate`` runs outside the root's forward (the vision tower, rope indices) sees full tensors; the
      layers unshard in their own forward hooks.
    - DDP or one process: the unwrapped module.

    Inside the block the forward runs under the accelerator's autocast (bf16 mixed precision keeps fp32 master
    weights and computes in bf16, as the update does) and without gradients. Generation never writes parameters.
    """
    unwrapped = accelerator.unwrap_model(model)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        if is_zero3(accelerator):
            import deepspeed

            stack.enter_context(deepspeed.zero.GatheredParameters(list(model.parameters())))
            remove_zero3_hooks(model)
            stack.callback(add_zero3_hooks, model)
        elif fsdp_version(model) == 1:
            from torch.distributed.fsdp import FullyShardedDataParallel

            stack.enter_context(FullyShardedDataParallel.summon_full_params(model, recurse=False, writeback=False))
        elif fsdp_version(model) == 2:
            state = model._get_fsdp_state()
            # The root must be initialised as the root before any child runs a forward of its own (generate
            # calls the vision tower outside the root's forward); FSDP2 does this in its root pre-forward hook.
            state._lazy_init()
            model.unshard()
            stack.callback(model.reshard)
        stack.enter_context(accelerator.autocast())
        yield unwrapped


def fsdp_version(model: Any) -> int:
    """1 for an FSDP1 ``FullyShardedDataParallel`` wrapper, 2 for a ``fully_shard`` module, 0 otherwise.

    Read from the model, not the accelerator, so that a model sharded with torch's ``fully_shard`` directly (as the
    CPU tests do: accelerate enables FSDP on GPUs only) takes the same path.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel

    if isinstance(model, FullyShardedDataParallel):
        return 1
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6
        return 0
    return 2 if isinstance(model, FSDPModule) else 0


def is_zero3(accelerator: Any) -> bool:
    """Whether the run is DeepSpeed ZeRO stage 3 (parameters sharded)."""
    return engine(accelerator) == "deepspeed" and accelerator.state.deepspeed_plugin.zero_stage == 3


def _zero3_offload(engine_model: Any) -> Any | None:
    """The ZeRO-3 parameter-offload object that owns the forward hooks (None before an optimiser exists)."""
    optimizer = getattr(engine_model, "optimizer", None)
    if optimizer is None:
        return None
    return getattr(optimizer, "parameter_offload", optimizer)


def remove_zero3_hooks(engine_model: Any) -> None:
    """Remove DeepSpeed ZeRO-3's gather / release hooks (TRL's ``remove_hooks``) while parameters are gathered."""
    offload = _zero3_offload(engine_model)
    if offload is None:
        return
    external = getattr(offload.module, "ds_external_parameters", lambda: [])()
    for parameter in [*offload.module.parameters(recurse=True), *(p for _, p in external)]:
        parameter.ds_active_sub_modules.clear()
    for hook in [*offload.forward_hooks, *offload.backward_hooks]:
        hook.remove()
    offload.forward_hooks, offload.backward_hooks = [], []


def add_zero3_hooks(engine_model: Any) -> None:
    """Put ZeRO-3's hooks back (TRL's ``add_hooks``), after invalidating the parameter coordinator's trace."""
    offload = _zero3_offload(engine_model)
    if offload is None:
        return
    coordinator = getattr(offload, "param_coordinator", None)
    if coordinator is not None and not coordinator.is_invalid_trace():
        coordinator._invalidate_trace()
    offload._register_deepspeed_module(offload.module)


def trainable_state_dict(model: Any, accelerator: Any) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (full tensors; gathered to every rank's CPU under FSDP / ZeRO-3)."""
    names = {name for name, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
    if is_sharded(accelerator):
        state = accelerator.get_state_dict(model)
    else:
        state = accelerator.unwrap_model(model).state_dict()
    return {name: value for name, value in state.items() if name in names}

"""Atomic safetensors checkpoints of a GRPO run: LoRA adapters, optimiser state and the iteration; and
:class:`RunCheckpoints`, the trainer's save / resume (sharded engines through ``accelerator.save_state``).

One checkpoint is one file, ``checkpoint-<iteration>.safetensors``. It is written to a temporary name in
the same folder, flushed to disk and then renamed with ``os.replace``, which is atomic: a run killed at any
moment leaves either the previous checkpoints or a complete new one, never a torn file.

Everything else a resumed run needs is a function of (seed, iteration): queries, env seeds and the policy's
sampling RNG are re-seeded at the start of every iteration, so restoring the weights, the optimiser and the
iteration counter continues the run exactly.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from promptloop_agents.learners.distributed import is_sharded, trainable_state_dict

logger = logging.getLogger("promptloop_agents.learners.grpo_trainer")  # the name resume messages always had
FORMAT = "promptloop-grpo/1"
_NAME = re.compile(r"^checkpoint-(\d+)\.safetensors$")


def checkpoint_path(folder: str | Path, iteration: int) -> Path:
    """``folder/checkpoint-<iteration, 6 digits>.safetensors``."""
    return Path(folder) / f"checkpoint-{iteration:06d}.safetensors"


def save_checkpoint(
    folder: str | Path,
    iteration: int,
    adapter: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None,
    metadata: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write a checkpoint atomically and delete all but the ``keep`` newest ones.

    Args:
        folder: the checkpoint folder (created if missing).
        iteration: number of finished iterations; the resumed run starts at this one.
        adapter: the trainable weights (LoRA adapters, or all under full fine-tuning) by name.
        optimizer: its ``state_dict`` is stored as tensors plus JSON param groups; None when it is saved elsewhere
            (sharded engines save it with ``accelerator.save_state``).
        metadata: JSON-able extras (e.g. the run config).
        keep: checkpoints to keep (at least 1).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"adapter/{name}": value.detach().cpu().contiguous() for name, value in adapter.items()}
    optim = optimizer.state_dict() if optimizer is not None else {"state": {}, "param_groups": []}
    for index, state in optim["state"].items():
        for key, value in state.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().contiguous()
    header = {
        "format": FORMAT,
        "iteration": str(iteration),
        "param_groups": json.dumps(optim["param_groups"]),
        "extra": json.dumps(metadata or {}),
    }
    final = checkpoint_path(folder, iteration)
    temporary = final.with_name(f".{final.name}.tmp")
    save_file(tensors, str(temporary), metadata=header)
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    for old in list_checkpoints(folder)[: -max(keep, 1)]:
        old.unlink(missing_ok=True)
    return final


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first (temporary files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint in ``folder``, or ``None``."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint: ``iteration``, ``adapter`` (name -> tensor), ``optimizer`` (a state dict) and ``extra``."""
    adapter: dict[str, torch.Tensor] = {}
    state: dict[int, dict[str, torch.Tensor]] = {}
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is not a PromptLoop GRPO checkpoint (format {header.get('format')!r}).")
        for name in handle.keys():  # noqa: SIM118  (safe_open handles are not iterable)
            kind, _, rest = name.partition("/")
            if kind == "adapter":
                adapter[rest] = handle.get_tensor(name)
            else:
                index, _, key = rest.partition("/")
                state.setdefault(int(index), {})[key] = handle.get_tensor(name)
    return {
        "iteration": int(header["iteration"]),
        "adapter": adapter,
        "optimizer": {"state": state, "param_groups": json.loads(header["param_groups"])},
        "extra": json.loads(header["extra"]),
    }


class RunCheckpoints:
    """Saving and resuming a trainer's run (the checkpoints of :class:`~.grpo_trainer.GRPOTrainer`).

    Expects the trainer's ``config``, ``accelerator``, ``model``, ``optimizer``, ``scheduler``, ``iteration``,
    ``checkpoint_dir``, ``metrics_file``, ``is_main`` and ``log`` (its :class:`~.tracking.RunLogger`).
    """

    def save(self) -> None:
        """Checkpoint (trainable weights, optimiser, scheduler, iteration, config) atomically.

        DDP: one safetensors file written by the main process. FSDP / DeepSpeed: ``accelerator.save_state``
        (each rank writes its shards) into ``checkpoints/state-<iteration>/`` plus the same metadata file.
        """
        self.accelerator.wait_for_everyone()
        extra = {"config": self.log.saved_config(), "scheduler": self.scheduler.state_dict()}
        if is_sharded(self.accelerator):
            self.accelerator.save_state(str(self.checkpoint_dir / f"state-{self.iteration:06d}"))
            weights: dict[str, torch.Tensor] = {}
            extra["sharded_state"] = f"state-{self.iteration:06d}"
        else:
            weights = trainable_state_dict(self.model, self.accelerator)
        if self.is_main:
            optimizer = None if is_sharded(self.accelerator) else self.optimizer
            save_checkpoint(
                self.checkpoint_dir, self.iteration, weights, optimizer, extra, keep=self.config.keep_checkpoints
            )
        self.accelerator.wait_for_everyone()

    def resume(self) -> bool:
        """Load the newest checkpoint of the run folder, if any, and drop later lines of the metrics log.

        Raises:
            ValueError: the checkpoint's config differs from this run's (beyond bookkeeping fields) and
                ``allow_config_change`` is not set.
        """
        path = latest_checkpoint(self.checkpoint_dir)
        if path is None:
            return False
        state = load_checkpoint(path)
        self.log.check_config(state["extra"].get("config", {}), path)
        if "sharded_state" in state["extra"]:
            self.accelerator.load_state(str(self.checkpoint_dir / state["extra"]["sharded_state"]))
        else:
            device = self.accelerator.device
            weights = {k: v.to(device) for k, v in state["adapter"].items()}
            missing = self.accelerator.unwrap_model(self.model).load_state_dict(weights, strict=False)
            if missing.unexpected_keys:
                raise ValueError(f"{path} holds weights this policy lacks: {missing.unexpected_keys[:3]} ...")
            self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state["extra"]:
            self.scheduler.load_state_dict(state["extra"]["scheduler"])
        self.iteration = state["iteration"]
        if self.is_main:
            logger.info("Resumed from %s (iteration %d).", path, self.iteration)
        if self.is_main and self.metrics_file.exists():
            lines = self.metrics_file.read_text().splitlines()
            kept = [line for line in lines if json.loads(line)["iteration"] <= self.iteration]
            self.metrics_file.write_text("".join(line + "\n" for line in kept))
        self.accelerator.wait_for_everyone()
        return True

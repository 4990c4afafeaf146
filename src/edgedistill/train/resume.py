"""A training run's state between epochs, saved after each one so --resume continues where a run stopped."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from edgedistill import distributed
from edgedistill.checkpoint import atomic_torch_save, load_failure
from edgedistill.errors import UserError, first_line

STATE_FORMAT = "edgedistill-train-state-v1"


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    seconds: float = 0.0


@dataclass
class Loop:
    """What one training run carries from epoch to epoch, and what a resume restores."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    gen: torch.Generator
    extra: nn.Module | None = None
    result: TrainResult = field(default_factory=TrainResult)
    best_state: dict | None = None
    epoch: int = 0
    elapsed: float = 0.0


def save_state(path: Path, loop: Loop, finished: bool) -> None:
    """Everything needed to continue after the last finished epoch, written atomically by rank 0. Every process
    calls it: each one's augmentation generator is gathered, so a resumed DDP run draws what it would have."""
    generators = distributed.gather(loop.gen.get_state())
    if not distributed.is_main():
        return
    cpu = lambda sd: {k: v.detach().cpu() for k, v in sd.items()}  # noqa: E731
    state = {"format": STATE_FORMAT, "epoch": loop.epoch, "finished": finished, "elapsed": loop.elapsed,
             "model": cpu(loop.model.state_dict()), "best_state": cpu(loop.best_state or {}),
             "optimizer": loop.opt.state_dict(), "scheduler": loop.sched.state_dict(),
             "scaler": loop.scaler.state_dict(), "generators": generators,
             "method": cpu(loop.extra.state_dict()) if loop.extra is not None else {},
             "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
             "best_epoch": loop.result.best_epoch, "best_val_accuracy": loop.result.best_val_accuracy,
             "history": loop.result.history}
    atomic_torch_save(path, state)


def restore_state(path: Path, loop: Loop, accel: torch.device) -> bool:
    """Load a state written by save_state into `loop`; returns whether that run had already finished."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a state file that cannot be read cannot be resumed from
        raise UserError(f"--resume: {path} is unreadable ({load_failure(exc)}); remove it to restart that model") \
            from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"--resume: {path} is not an edgedistill training state; remove it to restart that model")
    try:
        loop.model.load_state_dict(state["model"])
        loop.opt.load_state_dict(state["optimizer"])
        loop.sched.load_state_dict(state["scheduler"])
        loop.scaler.load_state_dict(state["scaler"])
        if loop.extra is not None:
            loop.extra.load_state_dict(state["method"])
        loop.gen.set_state(state["generators"][distributed.rank()])
    except (RuntimeError, KeyError, ValueError, IndexError) as exc:
        raise UserError(f"--resume: {path} does not match this run's model, optimizer or process count "
                        f"({first_line(exc)}); resume with the config and torchrun size it was started with") \
            from None
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    loop.best_state = {k: v.to(accel) for k, v in state["best_state"].items()} or None
    loop.epoch, loop.elapsed = state["epoch"], state["elapsed"]
    loop.result = TrainResult(history=state["history"], best_epoch=state["best_epoch"],
                              best_val_accuracy=state["best_val_accuracy"])
    return bool(state["finished"])


class Resume:
    """The trainer's resume collaborator: restores a state file if one is there, and rewrites it after every epoch."""

    def __init__(self, path: Path):
        self.path = path

    def restore(self, loop: Loop, accel: torch.device, on_best: Callable[[nn.Module, dict], None]) -> bool | None:
        """None when there is nothing to resume; else whether that run had finished. The best weights are saved
        again, since a kill between writing the checkpoint and the state could leave one the state never saw."""
        if not self.path.exists():
            return None
        finished = restore_state(self.path, loop, accel)
        if loop.best_state is not None and distributed.is_main():
            best = copy.deepcopy(loop.model)
            best.load_state_dict(loop.best_state)
            on_best(best, loop.result.history[loop.result.best_epoch - 1])
        return finished

    def save(self, loop: Loop, finished: bool) -> None:
        save_state(self.path, loop, finished)

"""PyTorch DDP under torchrun: one process per accelerator, gloo on the CPU and nccl on CUDA, files written by rank 0.

Nothing here is home-made scheduling: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK, torch.distributed does the rest.
A single process (no torchrun) sees world size 1 and every helper is a no-op.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn as nn

from edgedistill.errors import UserError


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(accel: torch.device) -> torch.device:
    """Join the process group torchrun describes and return this rank's accelerator (cuda:LOCAL_RANK on GPUs)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return accel
    if accel.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise UserError(f"torchrun: LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices; "
                            "lower --nproc_per_node")
        torch.cuda.set_device(local)
        accel = torch.device("cuda", local)
    # rank 0 exports and profiles every model while the others wait: allow an hour, not the 10-minute default
    dist.init_process_group(backend="nccl" if accel.type == "cuda" else "gloo", timeout=dt.timedelta(hours=1))
    return accel


def is_main_process_env() -> bool:
    """Rank 0 (or a single process) by torchrun's environment; valid after the process group is gone."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's value of a picklable object, on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's value of a picklable object, in rank order (a list of one without torchrun)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank."""
    if dist.is_initialized():
        for b in model.buffers():
            dist.broadcast(b, src=0)


def on_main(fn: Callable[[], Any]) -> Any:
    """Run fn on rank 0 only and return its result there (None elsewhere). A UserError on rank 0 is raised on every
    rank, so no process waits forever; the others continue only once rank 0 is done."""
    if not dist.is_initialized():
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except UserError as exc:
            error = str(exc)
    error = broadcast(error)
    if error is not None:
        raise UserError(error)
    return result


def all_sum(values: list[float], accel: torch.device) -> list[float]:
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=accel)
    dist.all_reduce(t)
    return t.tolist()


def all_true(flag: bool, accel: torch.device) -> bool:
    """True only when every rank says True; keeps ranks in step when one of them must skip a batch."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1 if flag else 0], device=accel)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def average_gradients(module: nn.Module | None) -> None:
    """Average the gradients of weights that live outside the DDP-wrapped model (a method's adapters)."""
    if module is None or not dist.is_initialized():
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()


def wrap(model: nn.Module, accel: torch.device) -> nn.Module:
    """DDP around the model when there are several processes; the bare model otherwise."""
    if not dist.is_initialized():
        return model
    ids = [accel.index] if accel.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

"""PyTorch DDP under torchrun: one process per device, gloo on the CPU and nccl on CUDA, files written by rank 0.

Nothing here is home-made scheduling: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK, torch.distributed does the rest.
A single process (no torchrun) sees world size 1 and every helper is a no-op.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from edgedistill.errors import UserError


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(accel: torch.device) -> torch.device:
    """Join the process group torchrun describes and return this rank's device (cuda:LOCAL_RANK on GPUs)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return accel
    if accel.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise UserError(f"torchrun: LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices; "
                            "lower --nproc_per_node")
        torch.cuda.set_device(local)
        accel = torch.device("cuda", local)
    dist.init_process_group(backend="nccl" if accel.type == "cuda" else "gloo")
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


def all_sum(values: list[float], device: torch.device) -> list[float]:
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_true(flag: bool, device: torch.device) -> bool:
    """True only when every rank says True; keeps ranks in step when one of them must skip a batch."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around the model when there are several processes; the bare model otherwise."""
    if not dist.is_initialized():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

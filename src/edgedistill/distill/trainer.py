"""One trainer for the teacher, the scratch student and the distilled student, so the control is trained the same way.

Data lives in memory as tensors; batches are drawn from a seeded generator, so two students trained with the same
seed see the same batches in the same order and start from the same weights.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch.utils.data import DistributedSampler

from edgedistill import distributed
from edgedistill.checkpoint import atomic_torch_save, atomic_write_text
from edgedistill.config import AugmentConfig, TrainConfig
from edgedistill.distill.augment import augment_batch
from edgedistill.distill.cache import TeacherCache
from edgedistill.distill.taps import TapRecorder
from edgedistill.errors import UserError, first_line
from edgedistill.progress import emit, track

STATE_FORMAT = "edgedistill-train-state-v1"
LossFn = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    seconds: float = 0.0


def make_optimizer(model: nn.Module, cfg: TrainConfig, extra: nn.Module | None = None) -> torch.optim.Optimizer:
    """Weight decay on weights only; norms and biases are left undecayed. `extra` holds a method's own weights."""
    params = list(model.parameters()) + (list(extra.parameters()) if extra is not None else [])
    decay = [p for p in params if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in params if p.requires_grad and p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.15)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray | torch.Tensor, device: torch.device,
                   batch_size: int = 1024) -> torch.Tensor:
    """Logits for every row of x, computed in eval mode, returned on the CPU."""
    model.eval()
    xt = torch.as_tensor(x)
    outs = [model(xt[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(xt), batch_size)]
    return torch.cat(outs)


def steps_per_epoch(n: int, cfg: TrainConfig) -> int:
    steps = math.ceil(n / cfg.batch_size)
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def local_batch_size(cfg: TrainConfig, world: int) -> int:
    """train.batch_size is the global batch; each of the `world` processes takes an equal share."""
    if cfg.batch_size % world:
        raise UserError(f"train.batch_size: {cfg.batch_size} does not split evenly over {world} processes; "
                        f"use a multiple of {world}")
    return cfg.batch_size // world


def check_train_config(cfg: TrainConfig, device: torch.device) -> tuple[int, torch.dtype | None]:
    """Per-process batch and autocast dtype; the pipeline calls this before any training so a bad value costs
    seconds, not a trained teacher."""
    return local_batch_size(cfg, distributed.world_size()), autocast_dtype(cfg, device)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.precision == "fp16" and device.type != "cuda":
        raise UserError("train.precision: fp16 needs CUDA; use bf16 or fp32 on the CPU")
    if cfg.precision == "fp16":
        return torch.float16
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


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


def restore_state(path: Path, loop: Loop, device: torch.device) -> bool:
    """Load a state written by save_state into `loop`; returns whether that run had already finished."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a state file that cannot be read cannot be resumed from
        raise UserError(f"--resume: {path} is unreadable ({first_line(exc)}); remove it to restart that model") \
            from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"--resume: {path} is not an edgedistill training state")
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
    loop.best_state = {k: v.to(device) for k, v in state["best_state"].items()} or None
    loop.epoch, loop.elapsed = state["epoch"], state["elapsed"]
    loop.result = TrainResult(history=state["history"], best_epoch=state["best_epoch"],
                              best_val_accuracy=state["best_val_accuracy"])
    return bool(state["finished"])


def train_model(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                cfg: TrainConfig, augment: AugmentConfig, loss_fn: LossFn, device: torch.device, seed: int,
                role: str, log_path: Path | None = None, on_best: Callable[[nn.Module, dict], None] | None = None,
                teacher: nn.Module | None = None, progress: bool = True,
                state_path: Path | None = None, cache: TeacherCache | None = None) -> TrainResult:
    """Train in place and leave the model holding its best-on-validation weights.

    With `state_path`, the full training state is written there after every epoch, and a state already there is
    resumed from (a finished one is returned as is). Under torchrun the model is wrapped in DDP and each process
    takes its shard of every global batch through DistributedSampler. With `cache`, inputs and the teacher's
    outputs come from its bank of views and the teacher does not run.
    """
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    world, rank = distributed.world_size(), distributed.rank()
    batch, dtype = check_train_config(cfg, device)
    xt, yt = torch.as_tensor(x_train), torch.as_tensor(y_train)
    sampler = DistributedSampler(range(len(xt)), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    n_steps = steps_per_epoch(len(sampler) * world, cfg)
    if hasattr(loss_fn, "setup"):  # feature methods: resolve taps, build adapters from real shapes
        loss_fn.setup(model, teacher, xt[:2].to(device))
    extra = getattr(loss_fn, "trainable", None)
    opt = make_optimizer(model, cfg, extra)
    loop = Loop(model, opt, make_scheduler(opt, cfg, cfg.epochs * n_steps),
                torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
                torch.Generator().manual_seed(seed + rank), extra)
    if state_path is not None and state_path.exists():
        finished = restore_state(state_path, loop, device)
        if on_best is not None and distributed.is_main() and loop.best_state is not None:
            # a kill between writing <role>.pt and the state could leave a checkpoint the state never saw
            best = copy.deepcopy(model)
            best.load_state_dict(loop.best_state)
            on_best(best, loop.result.history[loop.result.best_epoch - 1])
        if finished:
            model.load_state_dict(loop.best_state)
            loop.result.seconds = loop.elapsed
            return loop.result
        emit("resumed", role=role, epoch=loop.epoch)
    if log_path is not None and distributed.is_main():  # on resume, the log restarts from the restored history
        atomic_write_text(log_path, "".join(json.dumps(row) + "\n" for row in loop.result.history))
    trained = distributed.wrap(model, device)
    student_taps = TapRecorder(model, loss_fn.student_taps) if getattr(loss_fn, "student_taps", None) else None
    source = cache or LiveTeacher(teacher, augment, dtype, getattr(loss_fn, "teacher_taps", []))
    bar = track(range(loop.epoch + 1, cfg.epochs + 1), desc=f"train {role}", unit="epoch",
                enabled=progress and distributed.is_main(), total=cfg.epochs - loop.epoch)
    for epoch in bar:
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        sums = run_epoch(trained, loop, order, n_steps, batch, xt, yt, cfg, source, loss_fn, device, dtype,
                         student_taps, role, epoch)
        distributed.sync_buffers(model)  # batch-norm statistics as rank 0 has them, so all validate one model
        row = distributed.broadcast(epoch_row(model, loop, epoch, sums, x_val, y_val, device,
                                              time.perf_counter() - t0))
        loop.epoch, loop.elapsed = epoch, loop.elapsed + row["seconds"]
        loop.result.history.append(row)
        emit("epoch", role=role, epochs=cfg.epochs, **row)
        if log_path is not None and distributed.is_main():
            with log_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        if cfg.keep == "last" or row["val_accuracy"] > loop.result.best_val_accuracy or loop.best_state is None:
            loop.result.best_epoch, loop.result.best_val_accuracy = epoch, row["val_accuracy"]
            loop.best_state = copy.deepcopy(model.state_dict())
            if on_best is not None and distributed.is_main():
                on_best(model, row)
        if state_path is not None:
            save_state(state_path, loop, finished=epoch == cfg.epochs)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_accuracy']:.4f}",
                        best=f"{loop.result.best_val_accuracy:.4f}")
    source.close()
    if student_taps:
        student_taps.remove()
    distributed.barrier()
    model.load_state_dict(loop.best_state)
    loop.result.seconds = loop.elapsed
    return loop.result


class LiveTeacher:
    """Inputs augmented afresh at each step and, when there is a teacher, its outputs computed on them."""

    def __init__(self, teacher: nn.Module | None, augment: AugmentConfig, dtype: torch.dtype | None,
                 taps: list[str]):
        self.teacher, self.augment, self.dtype = teacher, augment, dtype
        self.rec = TapRecorder(teacher, taps) if teacher is not None and taps else None

    def batch(self, xt: torch.Tensor, idx: torch.Tensor, gen: torch.Generator,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        xb = augment_batch(xt[idx], self.augment, gen).to(device, non_blocking=True)
        if self.teacher is None:
            return xb, None, []
        with torch.no_grad(), torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.teacher(xb).float()
        return xb, logits, self.rec.take() if self.rec else []

    def close(self) -> None:
        if self.rec:
            self.rec.remove()


def run_epoch(trained: nn.Module, loop: Loop, order: torch.Tensor, n_steps: int, batch: int, xt: torch.Tensor,
              yt: torch.Tensor, cfg: TrainConfig, source: LiveTeacher | TeacherCache, loss_fn: LossFn,
              device: torch.device, dtype: torch.dtype | None, student_taps: TapRecorder | None, role: str,
              epoch: int) -> dict[str, float]:
    """One pass over this process's shard; returns loss sums, correct and seen counts summed over processes."""
    trained.train()
    sums: dict[str, float] = {}
    correct = seen = skipped = 0
    for step in range(n_steps):
        idx = order[step * batch:(step + 1) * batch]
        if len(idx) == 0:
            break
        xb, teacher_logits, teacher_feats = source.batch(xt, idx, loop.gen, device)
        yb = yt[idx].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = trained(xb)
            feats = (student_taps.take(), teacher_feats) if student_taps else ()
            terms = loss_fn(logits.float(), teacher_logits, yb, *feats)
        loss = sum(terms.values())
        if not distributed.all_true(bool(torch.isfinite(loss)), device):
            if cfg.on_nonfinite == "skip":
                skipped += 1
                continue
            weights = "".join(f", distill.{name}.weight" for name in terms if name in ("fitnets", "at"))
            raise FloatingPointError(
                f"{role}: the loss became {loss.item()} in epoch {epoch}, batch {step + 1}; the last good "
                f"checkpoint is kept. Lower the learning rate{weights}, or set train.on_nonfinite: skip")
        loop.opt.zero_grad(set_to_none=True)
        loop.scaler.scale(loss).backward()
        distributed.average_gradients(loop.extra)
        loop.scaler.step(loop.opt)
        loop.scaler.update()
        loop.sched.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v.item() * len(idx)
        sums["loss"] = sums.get("loss", 0.0) + loss.item() * len(idx)
        correct += (logits.argmax(1) == yb).sum().item()
        seen += len(idx)
    keys = sorted(sums)
    totals = distributed.all_sum([sums[k] for k in keys] + [correct, seen, skipped], device)
    return {**dict(zip(keys, totals)), "correct": totals[-3], "seen": totals[-2], "skipped": totals[-1]}


def epoch_row(model: nn.Module, loop: Loop, epoch: int, sums: dict[str, float], x_val: np.ndarray,
              y_val: np.ndarray, device: torch.device, seconds: float) -> dict:
    """The epoch's log line: training averages over every process, and validation scored on the whole split."""
    seen = max(sums.pop("seen"), 1)
    correct, skipped = sums.pop("correct"), sums.pop("skipped")
    val_logits = predict_logits(model, x_val, device)
    y_val_t = torch.as_tensor(y_val)
    return {
        "epoch": epoch,
        "lr": loop.opt.param_groups[0]["lr"],
        **{f"train_{k}": v / seen for k, v in sums.items() if k != "loss"},
        "train_loss": sums.get("loss", float("nan")) / seen,
        "train_accuracy": correct / seen,
        "val_loss": F.cross_entropy(val_logits, y_val_t).item(),
        "val_accuracy": (val_logits.argmax(1) == y_val_t).float().mean().item(),
        "seconds": seconds,
        "skipped_nonfinite_batches": int(skipped),
    }

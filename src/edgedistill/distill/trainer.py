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

from edgedistill.config import AugmentConfig, TrainConfig
from edgedistill.progress import emit, track

LossFn = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    seconds: float = 0.0


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding (images and sequences) and random horizontal flip (images)."""
    n = x.shape[0]
    if cfg.crop_padding > 0 and x.dim() in (3, 4):
        p = cfg.crop_padding
        idx_n = torch.arange(n, device=x.device)
        if x.dim() == 4:
            h, w = x.shape[-2:]
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), generator=gen, device=gen.device).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=gen, device=gen.device).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[idx_n[:, None, None, None], chans, rows, cols]
        else:
            length = x.shape[-1]
            padded = F.pad(x, (p, p))
            dx = torch.randint(0, 2 * p + 1, (n,), generator=gen, device=gen.device).to(x.device)
            cols = (dx[:, None] + torch.arange(length, device=x.device))[:, None, :]
            chans = torch.arange(x.shape[1], device=x.device)[None, :, None]
            x = padded[idx_n[:, None, None], chans, cols]
    if cfg.hflip and x.dim() == 4:
        flip = (torch.rand(n, generator=gen, device=gen.device) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weights only; norms and biases are left undecayed."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
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


def train_model(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                cfg: TrainConfig, augment: AugmentConfig, loss_fn: LossFn, device: torch.device, seed: int,
                role: str, log_path: Path | None = None, on_best: Callable[[nn.Module, dict], None] | None = None,
                teacher: nn.Module | None = None, progress: bool = True) -> TrainResult:
    """Train in place and leave the model holding its best-on-validation weights."""
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    xt, yt = torch.as_tensor(x_train), torch.as_tensor(y_train)
    gen = torch.Generator().manual_seed(seed)
    opt = make_optimizer(model, cfg)
    n_steps = steps_per_epoch(len(xt), cfg)
    sched = make_scheduler(opt, cfg, cfg.epochs * n_steps)
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    autocast_dtype = torch.bfloat16 if use_bf16 else None
    result, best_state = TrainResult(), None
    start = time.perf_counter()
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")
    bar = track(range(1, cfg.epochs + 1), desc=f"train {role}", unit="epoch", enabled=progress)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(xt), generator=gen)
        sums: dict[str, float] = {}
        correct, seen, skipped = 0, 0, 0
        for step in range(n_steps):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            xb = augment_batch(xt[idx], augment, gen).to(device, non_blocking=True)
            yb = yt[idx].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                teacher_logits = None
                if teacher is not None:
                    with torch.no_grad():
                        teacher_logits = teacher(xb).float()
                logits = model(xb)
                terms = loss_fn(logits.float(), teacher_logits, yb)
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                if cfg.on_nonfinite == "skip":
                    skipped += 1
                    continue
                raise FloatingPointError(
                    f"{role}: the loss became {loss.item()} in epoch {epoch}, batch {step + 1}; the last good "
                    "checkpoint is kept. Lower the learning rate, or set train.on_nonfinite: skip")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item() * len(idx)
            sums["loss"] = sums.get("loss", 0.0) + loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(idx)
        val_logits = predict_logits(model, x_val, device)
        y_val_t = torch.as_tensor(y_val)
        row = {
            "epoch": epoch,
            "lr": opt.param_groups[0]["lr"],
            **{f"train_{k}": v / max(seen, 1) for k, v in sums.items()},
            "train_loss": sums.get("loss", float("nan")) / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": F.cross_entropy(val_logits, y_val_t).item(),
            "val_accuracy": (val_logits.argmax(1) == y_val_t).float().mean().item(),
            "seconds": time.perf_counter() - t0,
            "skipped_nonfinite_batches": skipped,
        }
        result.history.append(row)
        emit("epoch", role=role, epochs=cfg.epochs, **row)
        if log_path is not None:
            with log_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        if row["val_accuracy"] > result.best_val_accuracy or best_state is None:
            result.best_epoch, result.best_val_accuracy = epoch, row["val_accuracy"]
            best_state = copy.deepcopy(model.state_dict())
            if on_best is not None:
                on_best(model, row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_accuracy']:.4f}",
                        best=f"{result.best_val_accuracy:.4f}")
    model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    return result

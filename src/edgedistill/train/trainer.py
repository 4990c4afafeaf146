"""One trainer for the teacher, the scratch student and the distilled student, so the control is trained the same way.

Data lives in memory as tensors; batches are drawn from a seeded generator, so two students trained with the same
seed see the same batches in the same order and start from the same weights. What varies around the loop (the epoch
log, saving the best checkpoint, resume, the non-finite-loss policy) are callbacks and collaborators, not arguments.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgedistill import distributed
from edgedistill.atomic import atomic_write_text
from edgedistill.config import AugmentConfig, TrainConfig
from edgedistill.data.loader import Rows
from edgedistill.distill import of_kind
from edgedistill.distill.method import Method
from edgedistill.distill.taps import TapRecorder
from edgedistill.errors import UserError
from edgedistill.models.evaluate import model_input, predict_logits
from edgedistill.models.fold import for_inference
from edgedistill.progress import Callback, emit, track
from edgedistill.teachers.base import ExternalTeacher
from edgedistill.train.augment import augment_batch
from edgedistill.train.cache import TeacherCache
from edgedistill.train.epoch_plan import EpochPlan
from edgedistill.train.mix import Mix, Mixer
from edgedistill.train.resume import Loop, Resume, TrainResult

Batch = tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]


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


def training_memory_format(model: nn.Module, cfg: TrainConfig) -> torch.memory_format:
    """channels_last where the config asks for it and the model has a 2-D convolution to benefit."""
    wanted = cfg.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())
    return torch.channels_last if wanted else torch.contiguous_format


def local_batch_size(cfg: TrainConfig, world: int) -> int:
    """train.batch_size is the global batch; each of the `world` processes takes an equal share."""
    if cfg.batch_size % world:
        raise UserError(f"train.batch_size: {cfg.batch_size} does not split evenly over {world} processes; "
                        f"use a multiple of {world}")
    return cfg.batch_size // world


def check_train_config(cfg: TrainConfig, accel: torch.device) -> tuple[int, torch.dtype | None]:
    """Per-process batch and autocast dtype; the pipeline calls this before any training so a bad value costs
    seconds, not a trained teacher."""
    return local_batch_size(cfg, distributed.world_size()), autocast_dtype(cfg, accel)


def autocast_dtype(cfg: TrainConfig, accel: torch.device) -> torch.dtype | None:
    if cfg.precision == "fp16" and accel.type != "cuda":
        raise UserError("train.precision: fp16 needs CUDA; use bf16 or fp32 on the CPU")
    if cfg.precision == "fp16":
        return torch.float16
    if cfg.precision == "bf16" or (cfg.precision == "auto" and accel.type == "cuda"):
        return torch.bfloat16
    return None


class LiveTeacher:
    """Inputs augmented afresh at each step and, when there is a teacher, its outputs computed on them. The teacher
    runs as the cache's build runs it (`for_inference`: batch norms folded, channels-last weights), since a live
    teacher's forward pass is most of a mixed KD step's cost."""

    def __init__(self, teacher: nn.Module | None, augment: AugmentConfig, taps: Sequence[str] = (),
                 stats: tuple | None = None):
        if teacher is not None and not isinstance(teacher, ExternalTeacher):
            teacher = for_inference(teacher, keep=set(taps), channels_last=True)
        self.teacher, self.augment, self.dtype, self.stats = teacher, augment, None, stats
        self.rec = TapRecorder(teacher, list(taps)) if teacher is not None and taps else None

    def start(self, accel: torch.device, dtype: torch.dtype | None) -> None:
        self.dtype = dtype
        if self.teacher is not None:
            self.teacher.to(accel).eval()

    def batch(self, x_rows: torch.Tensor, idx: torch.Tensor, gen: torch.Generator, accel: torch.device,
              mix: Mix | None = None) -> Batch:
        """The augmented (then, with `mix`, mixed) inputs, and the teacher's outputs on exactly those."""
        xb = augment_batch(x_rows, self.augment, gen, self.stats).to(accel, non_blocking=True)
        if mix is not None:
            xb = mix.inputs(xb)
        if self.teacher is None:
            return xb, None, []
        with torch.no_grad(), torch.autocast(accel.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.teacher(model_input(xb, accel)).float()  # its own copy: the student reads xb next
        return xb, logits, self.rec.take() if self.rec else []

    def view_logits(self, idx: torch.Tensor, accel: torch.device) -> torch.Tensor:
        raise UserError("this distillation method reads the teacher's outputs on every cached view: set "
                        "distill.cache.enabled: true (and a distill.cache.max_bytes the bank fits in)")

    def close(self) -> None:
        if self.rec:
            self.rec.remove()


BatchSource = LiveTeacher | TeacherCache


def batch_source(method: Method, augment: AugmentConfig, teacher: nn.Module | None = None,
                 cache: TeacherCache | None = None, stats: tuple | None = None) -> BatchSource:
    """Where a model's batches come from: the cache's views when there is one, else live augmentation, with the
    teacher run only for a method that uses it (recording the teacher taps the method names)."""
    if cache is not None:
        return cache
    return LiveTeacher(teacher if method.uses_teacher else None, augment, method.teacher_taps, stats)


class EpochLog(Callback):
    """logs/<role>.jsonl, one row per epoch; on resume it restarts from the restored history. Rank 0 writes."""

    def __init__(self, path: Path):
        self.path = path

    def on_start(self, history: list[dict]) -> None:
        if distributed.is_main():
            atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in history))

    def on_epoch(self, row: dict) -> None:
        if distributed.is_main():
            with self.path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


class NonFinitePolicy:
    """train.on_nonfinite: stop with the epoch and batch named, or skip the batch and count it."""

    def __init__(self, action: str, role: str):
        self.action, self.role = action, role

    def skip(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], epoch: int, step: int,
             accel: torch.device) -> bool:
        if distributed.all_true(bool(torch.isfinite(loss)), accel):
            return False
        if self.action == "skip":
            return True
        weights = "".join(f", distill.{name}.weight" for name in terms
                          if name in of_kind("feature") + of_kind("relation"))
        raise FloatingPointError(
            f"{self.role}: the loss became {loss.item()} in epoch {epoch}, batch {step + 1}; the last good "
            f"checkpoint is kept. Lower the learning rate{weights}, or set train.on_nonfinite: skip")


class Trainer:
    """Trains one model in place with one loss and one batch source, and leaves it holding its best-on-validation
    weights. Under torchrun the model is wrapped in DDP and each process takes its shard of every global batch
    through DistributedSampler."""

    def __init__(self, cfg: TrainConfig, loss: Method, source: BatchSource, accel: torch.device, seed: int,
                 role: str, callbacks: Sequence[Callback] = (), resume: Resume | None = None, progress: bool = False,
                 loader_workers: int | None = None, mixer: Mixer | None = None):
        self.cfg, self.loss, self.source, self.accel, self.seed, self.role = cfg, loss, source, accel, seed, role
        self.callbacks, self.resume, self.progress = list(callbacks), resume, progress
        self.loader_workers, self.mixer = loader_workers, mixer
        if mixer is not None and isinstance(source, TeacherCache):
            raise ValueError("a mixed batch needs the teacher live: the cache holds its outputs on unmixed views")
        self.batch, self.dtype = check_train_config(cfg, accel)
        self.nonfinite = NonFinitePolicy(cfg.on_nonfinite, role)
        self.memory_format = torch.contiguous_format  # fit() sets it from the config and the model

    def _notify(self, event: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(*args)

    def _loop(self, model: nn.Module, n_steps: int) -> Loop:
        opt = make_optimizer(model, self.cfg, self.loss.trainable)
        return Loop(model, opt, make_scheduler(opt, self.cfg, self.cfg.epochs * n_steps),
                    torch.amp.GradScaler(self.accel.type, enabled=self.dtype == torch.float16),
                    torch.Generator().manual_seed(self.seed + distributed.rank()), self.loss.trainable)

    def fit(self, model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
            y_val: np.ndarray) -> TrainResult:
        model.to(self.accel)
        self.memory_format = training_memory_format(model, self.cfg)
        model.to(memory_format=self.memory_format)
        rows, yt = Rows(x_train, self.loader_workers, self.accel), torch.as_tensor(y_train)
        plan = EpochPlan(yt, self.batch, self.cfg, self.seed)
        n_steps = plan.n_steps
        loop = self._loop(model, n_steps)
        finished = self.resume.restore(loop, self.accel, lambda m, r: self._notify("on_best", m, r)) \
            if self.resume else None
        self._notify("on_start", loop.result.history)
        if finished:
            return self._finish(loop)
        if finished is not None:
            emit("resumed", role=self.role, epoch=loop.epoch)
        self.source.start(self.accel, self.dtype)
        trained = distributed.wrap(model, self.accel)
        taps = TapRecorder(model, self.loss.student_taps) if self.loss.student_taps else None
        bar = track(range(loop.epoch + 1, self.cfg.epochs + 1), desc=f"train {self.role}", unit="epoch",
                    enabled=self.progress and distributed.is_main(), total=self.cfg.epochs, initial=loop.epoch)
        for epoch in bar:
            t0 = time.perf_counter()
            self.loss.start_epoch(epoch, self.cfg.epochs)
            sums = self.run_epoch(trained, loop, plan.batches(epoch), rows, yt, taps, epoch)
            distributed.sync_buffers(model)  # batch-norm statistics as rank 0 has them, so all validate one model
            row = distributed.broadcast(epoch_row(model, loop, epoch, sums, x_val, y_val, self.accel,
                                                  time.perf_counter() - t0))
            self.end_epoch(loop, row)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_accuracy']:.4f}",
                            best=f"{loop.result.best_val_accuracy:.4f}")
        self.source.close()
        if taps:
            taps.remove()
        distributed.barrier()
        return self._finish(loop)

    def end_epoch(self, loop: Loop, row: dict) -> None:
        """Record the epoch, keep the best (or, with keep: last, the latest) weights, and save the state."""
        loop.epoch, loop.elapsed = row["epoch"], loop.elapsed + row["seconds"]
        loop.result.history.append(row)
        if self.cfg.keep == "last" or row["val_accuracy"] > loop.result.best_val_accuracy or loop.best_state is None:
            loop.result.best_epoch, loop.result.best_val_accuracy = row["epoch"], row["val_accuracy"]
            loop.best_state = copy.deepcopy(loop.model.state_dict())
            if distributed.is_main():
                self._notify("on_best", loop.model, row)
        if self.resume:
            self.resume.save(loop, finished=row["epoch"] == self.cfg.epochs)
        emit("epoch", role=self.role, epochs=self.cfg.epochs, **row)
        self._notify("on_epoch", row)

    @staticmethod
    def _finish(loop: Loop) -> TrainResult:
        """The kept weights, back in the default memory order, so export and later stages see plain tensors."""
        loop.model.to(memory_format=torch.contiguous_format)
        loop.model.load_state_dict(loop.best_state)
        loop.result.seconds = loop.elapsed
        return loop.result

    def run_epoch(self, trained: nn.Module, loop: Loop, batches: list[torch.Tensor], rows: Rows,
                  yt: torch.Tensor, taps: TapRecorder | None, epoch: int) -> dict[str, float]:
        """One pass over this process's shard; returns loss sums, correct and seen counts summed over processes
        (`labeled` counts the rows with a label, on which the training accuracy is measured)."""
        trained.train()
        sums: dict[str, float] = {}
        correct = seen = skipped = labeled = 0
        accel, dtype = self.accel, self.dtype
        for step, (idx, x_rows) in enumerate(rows.epoch(batches)):
            mix = self.mixer.draw(tuple(x_rows.shape), loop.gen) if self.mixer else None
            xb, teacher_logits, teacher_feats = self.source.batch(x_rows, idx, loop.gen, accel, mix)
            if self.memory_format is torch.channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = yt[idx].to(accel, non_blocking=True)
            with torch.autocast(accel.type, dtype=dtype, enabled=dtype is not None):
                logits = trained(xb)
                targets = mix.targets(yb, logits.shape[1]) if mix else yb
                feats = (taps.take(), teacher_feats) if taps else ()
                terms = self.loss(logits.float(), teacher_logits, targets, *feats, **self.extras(idx))
            loss = sum(terms.values())
            if self.nonfinite.skip(loss, terms, epoch, step, accel):
                skipped += 1
                continue
            step_optimizer(loop, loss)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item() * len(idx)
            sums["loss"] = sums.get("loss", 0.0) + loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()  # an unlabelled row's -1 never matches
            seen += len(idx)
            labeled += (yb >= 0).sum().item()
        keys = sorted(sums)
        totals = distributed.all_sum([sums[k] for k in keys] + [correct, seen, skipped, labeled], accel)
        return {**dict(zip(keys, totals)), "correct": totals[-4], "seen": totals[-3], "skipped": totals[-2],
                "labeled": totals[-1]}


    def extras(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The step inputs the method names in `wants`, beyond logits, targets and taps."""
        wants, out = self.loss.wants, {}
        if "index" in wants:
            out["index"] = idx.to(self.accel)
        if "views" in wants:
            out["views"] = self.source.view_logits(idx, self.accel)
        return out


def step_optimizer(loop: Loop, loss: torch.Tensor) -> None:
    loop.opt.zero_grad(set_to_none=True)
    loop.scaler.scale(loss).backward()
    distributed.average_gradients(loop.extra)
    loop.scaler.step(loop.opt)
    loop.scaler.update()
    loop.sched.step()


def epoch_row(model: nn.Module, loop: Loop, epoch: int, sums: dict[str, float], x_val: np.ndarray,
              y_val: np.ndarray, accel: torch.device, seconds: float) -> dict:
    """The epoch's log line: training averages over every process, and validation scored on the whole split."""
    rows, labeled = sums.pop("seen"), sums.pop("labeled")
    seen = max(rows, 1)
    correct, skipped = sums.pop("correct"), sums.pop("skipped")
    val_logits = predict_logits(model, x_val, accel)
    y_val_t = torch.as_tensor(y_val)
    return {
        "epoch": epoch,
        "lr": loop.opt.param_groups[0]["lr"],
        **{f"train_{k}": v / seen for k, v in sums.items() if k != "loss"},
        "train_loss": sums.get("loss", float("nan")) / seen,
        "train_accuracy": correct / max(labeled, 1),
        "val_loss": F.cross_entropy(val_logits, y_val_t).item(),
        "val_accuracy": (val_logits.argmax(1) == y_val_t).float().mean().item(),
        "seconds": seconds,
        "skipped_nonfinite_batches": int(skipped),
        "rows_labeled": int(labeled),
        "rows_unlabeled": int(rows - labeled),
    }

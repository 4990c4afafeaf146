"""Teacher-output cache: the teacher's logits (and tap features, where a method reads them) for a fixed bank of K
augmented views of every training sample, computed once and reused by every distillation epoch.

On a CPU the teacher's forward pass otherwise costs as much as the student's whole step. The views are stored as
augmentation parameters, so a view is rebuilt exactly; each step draws one view per sample. The scratch student
draws from the same bank, so the control sees the same inputs. The file lives in the run folder and carries a key
made of the teacher's weights, the training data, the augmentation, K, the seed, the taps and the precision: any
change rebuilds it.

A tap is stored as the feature loss will compare it (`taps.as_compared`): pooled to the spatial size of its paired
student tap. A ResNet's 64x28x28 stage kept whole for a 4-view bank of Fashion-MNIST would take 22 GB; at a small
student's 14x14 it takes a quarter of that, and the loss is the same.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgedistill.atomic import read_json_object
from edgedistill.config import AugmentConfig
from edgedistill.data.rows import RowFile, data_digest
from edgedistill.distill.taps import TapRecorder, as_compared
from edgedistill.models.evaluate import model_input
from edgedistill.models.fold import for_inference
from edgedistill.teachers.base import ExternalTeacher
from edgedistill.train.augment import apply_augment, augment_params

Shapes = list[tuple[int, ...]] | None  # per tap, one student sample's (C, *spatial); None stores taps whole

log = logging.getLogger("edgedistill")
FORMAT = "edgedistill-teacher-cache-v2"  # a folder: meta.json and one raw file per bank
FEATURE_DTYPE = torch.bfloat16  # half the bytes of float32, and float32's range (float16 overflows at 65504)


class DiskBank:
    """A (K, N, ...) bank left in its file: each batch reads its K*N-flattened rows with pread."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: torch.dtype):
        self.shape, self.dtype = torch.Size(shape), dtype
        self.rows = RowFile(path, (shape[0] * shape[1],) + tuple(shape[2:]), STORED[dtype])

    def take(self, view: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        flat = (view.long() * self.shape[1] + idx.long()).numpy()
        return torch.from_numpy(self.rows.take(flat)).view(self.dtype)


STORED = {torch.float32: np.float32, torch.bfloat16: np.int16}  # bfloat16 kept as its raw 16 bits


def take(bank: Bank, view: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return bank[view, idx] if isinstance(bank, torch.Tensor) else bank.take(view, idx)


Bank = torch.Tensor | DiskBank  # (K, N, ...): in memory, or rows read from the run folder per batch


@dataclass
class TeacherCache:
    views: int
    params: Bank  # (K, N, P) augmentation parameters
    logits: Bank  # (K, N, classes) float32
    feats: list[Bank]  # per teacher tap: (K, N, C, *spatial) bfloat16
    augment: AugmentConfig
    built: bool = False  # False when the bank on disk was reused
    stats: tuple | None = None  # the inputs' channel mean and std, for colour jitter

    def batch(self, x_rows: torch.Tensor, idx: torch.Tensor, gen: torch.Generator, accel: torch.device,
              mix: None = None) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """One view per sample of these rows: the augmented inputs, the teacher's logits and its tap features.
        Mixed batches are never served from here (the Trainer refuses them): the bank holds unmixed views."""
        view = torch.randint(0, self.views, (len(idx),), generator=gen)
        x = apply_augment(x_rows, take(self.params, view, idx), self.augment, self.stats)
        feats = [take(f, view, idx).to(accel).float() for f in self.feats]
        return x.to(accel, non_blocking=True), take(self.logits, view, idx).to(accel), feats

    def view_logits(self, idx: torch.Tensor, accel: torch.device) -> torch.Tensor:
        """The teacher's logits on every view of these samples, (B, K, classes): multi-view methods average them."""
        every = torch.stack([take(self.logits, torch.full_like(idx, v), idx) for v in range(self.views)], 1)
        return every.to(accel)

    def start(self, accel: torch.device, dtype: torch.dtype | None) -> None:
        """Nothing to prepare: the teacher does not run. (The live source moves it to the accelerator here.)"""

    def close(self) -> None:
        """Nothing to release; the live source removes its hooks here."""


def cache_key(teacher: nn.Module, x: np.ndarray, y: np.ndarray, augment: AugmentConfig, views: int, seed: int,
              taps: list[str], dtype: torch.dtype | None, compared_at: Shapes = None) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(data_digest(x))  # no copy of the training set; a pack's fingerprint
    h.update(memoryview(np.ascontiguousarray(y)).cast("B"))
    stored_as = [compared_at] if compared_at else []  # banks of whole taps keep their old keys
    h.update(json.dumps([augment.model_dump(), views, seed, taps, str(dtype)] + stored_as).encode())
    return h.hexdigest()


def as_stored(feats: list[torch.Tensor], compared_at: Shapes) -> list[torch.Tensor]:
    """The tap features as the bank keeps them."""
    if not compared_at:
        return feats
    return [as_compared(shape, f.float()) for shape, f in zip(compared_at, feats)]


def estimated_bytes(teacher: nn.Module, taps: list[str], sample: torch.Tensor, n: int, views: int,
                    compared_at: Shapes = None) -> int:
    """What the bank will hold: float32 logits plus bfloat16 tap features, for n samples and K views."""
    rec = TapRecorder(teacher, taps)
    with torch.no_grad():
        out = teacher.eval()(sample[:1])
    rec.remove()
    feats = as_stored(rec.take(), compared_at)
    per_sample = out.shape[1] * 4 + sum(f[0].numel() * FEATURE_DTYPE.itemsize for f in feats)
    return per_sample * n * views


class BankWriter:
    """Writes (K, N, ...) banks block by block into files of a folder, so building holds one batch, not the bank."""

    def __init__(self, folder: Path):
        self.folder, self.files, self.meta = folder, {}, {}

    def write(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, v: int, i: int, block: torch.Tensor):
        if name not in self.files:
            self.files[name] = open(self.folder / f"{name}.bin", "wb")
            self.files[name].truncate(int(np.prod(shape)) * dtype.itemsize)
            self.meta[name] = {"shape": list(shape), "dtype": str(dtype).removeprefix("torch.")}
        row = int(np.prod(shape[2:])) * dtype.itemsize
        data = block.to(dtype).contiguous()
        data = (data.view(torch.int16) if dtype == torch.bfloat16 else data).numpy()  # numpy has no bfloat16
        os.pwrite(self.files[name].fileno(), data.tobytes(), (v * shape[1] + i) * row)

    def close(self) -> dict:
        for fh in self.files.values():
            fh.close()
        return self.meta


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def open_bank(folder: Path, name: str, meta: dict, ram_left: list[int]) -> Bank:
    """The bank in memory while the RAM budget lasts, else read from its file per batch."""
    shape, dtype = tuple(meta["shape"]), DTYPES[meta["dtype"]]
    size = int(np.prod(shape)) * dtype.itemsize
    if size > ram_left[0]:
        return DiskBank(folder / f"{name}.bin", shape, dtype)
    ram_left[0] -= size
    raw = np.fromfile(folder / f"{name}.bin", dtype=STORED[dtype])
    return torch.from_numpy(raw).view(dtype).reshape(shape)


@torch.no_grad()
def build_cache(teacher: nn.Module, x, augment: AugmentConfig, views: int, seed: int, taps: list[str],
                accel: torch.device, dtype: torch.dtype | None, folder: Path, batch_size: int | None = None,
                compared_at: Shapes = None, stats: tuple | None = None) -> dict:
    """Run the teacher over every view, batch by batch, writing each block of the bank to `folder` as it comes;
    returns the banks' shapes and dtypes. The teacher runs as `for_inference` prepares it (batch norms folded,
    channels-last images), in batches of 128 on a CPU (the Fashion-MNIST ResNet runs faster than in batches of 512,
    which spill the caches) and 1024 on an accelerator."""
    gen = torch.Generator().manual_seed(seed + 7919)  # its own stream: building a cache draws nothing from training
    if augment.crop_padding == 0 and not augment.hflip and augment.resized_crop is None and not augment.color_jitter:
        views = 1  # no augmentation: one view, the input itself
    n = len(x)
    shape = tuple(x.shape)
    teacher = teacher.eval()
    if not isinstance(teacher, ExternalTeacher):  # ONNX Runtime sessions: nothing to fold, and no deep copy
        teacher = for_inference(teacher, keep=set(taps), channels_last=len(shape) == 4)
    batch_size = batch_size or (128 if accel.type == "cpu" else 1024)
    batch_size = max(1, min(batch_size, 2**23 // (4 * int(np.prod(shape[1:])))))  # camera images: 8 MB batches
    params = torch.stack([augment_params(shape, augment, gen) for _ in range(views)])
    out = BankWriter(folder)
    out.write("params", tuple(params.shape), torch.float32, 0, 0, params.float())
    rec = TapRecorder(teacher, taps)
    for i in range(0, n, batch_size):
        rows = torch.as_tensor(x[i:i + batch_size])
        for v in range(views):
            xb = model_input(apply_augment(rows, params[v, i:i + batch_size], augment, stats), accel)
            with torch.autocast(accel.type, dtype=dtype, enabled=dtype is not None):
                logits = teacher(xb).float().cpu()
            out.write("logits", (views, n, logits.shape[1]), torch.float32, v, i, logits)
            for t, f in enumerate(as_stored(rec.take(), compared_at)):
                out.write(f"feat{t}", (views, n, *f.shape[1:]), FEATURE_DTYPE, v, i, f.cpu())
    rec.remove()
    meta = out.close()
    return {**meta, "views": views, "taps": len(taps)}


@dataclass(frozen=True)
class CacheSpec:
    """What a bank holds (the teacher's outputs on `views` augmented views of rows x, at the taps, stored at the
    student's size `compared_at`), where it lives (`path`, a folder) and its budgets: every input of load_or_build."""

    path: Path
    teacher: nn.Module
    x: Any  # the training rows: an array or a PackedImages
    y: np.ndarray
    augment: AugmentConfig
    views: int
    seed: int
    taps: list[str]
    accel: torch.device
    dtype: torch.dtype | None
    max_bytes: int
    compared_at: Shapes = None
    max_ram_bytes: int = 1_000_000_000
    stats: tuple | None = None  # the inputs' channel mean and std, for colour jitter

    def key(self) -> str:
        return cache_key(self.teacher, self.x, self.y, self.augment, self.views, self.seed, self.taps, self.dtype,
                         self.compared_at)


def load_or_build(spec: CacheSpec) -> TeacherCache | None:
    """The bank in the folder `spec.path` when its key matches, else a new one written there; None when it would
    exceed max_bytes or the disk's free space, in which case the teacher runs live. Of the bank, at most
    max_ram_bytes is held in memory (the logits first); the rest is read per batch."""
    path = Path(spec.path)
    size = estimated_bytes(spec.teacher, spec.taps, model_input(spec.x[:1], spec.accel), len(spec.x),
                           spec.views, spec.compared_at)
    if size > spec.max_bytes:
        log.warning("teacher cache: %d views would take %.2f GB (> distill.cache.max_bytes %.2f GB); the teacher "
                    "runs live instead", spec.views, size / 1e9, spec.max_bytes / 1e9)
        return None
    key = spec.key()
    meta, built = read_bank_meta(path), False
    if meta is None or meta.get("key") != key:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # a killed build's; the run's lock makes it no one's
            shutil.rmtree(stale, ignore_errors=True)
        free = shutil.disk_usage(path.parent).free
        if size > free:
            log.warning("teacher cache: %d views would take %.2f GB, more than the %.2f GB free on the run "
                        "folder's disk; the teacher runs live instead", spec.views, size / 1e9, free / 1e9)
            return None
        meta, built = build_into(path, spec, key), True
    ram = [spec.max_ram_bytes]
    names = ["logits", "params"] + [f"feat{t}" for t in range(meta["taps"])]
    banks = {name: open_bank(path, name, meta[name], ram) for name in names}
    return TeacherCache(meta["views"], banks["params"], banks["logits"], [banks[n] for n in names[2:]], spec.augment,
                        built=built, stats=spec.stats)


def build_into(path: Path, spec: CacheSpec, key: str) -> dict:
    """Build the bank in a temporary folder beside `path`, then put it in its place; returns its meta."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    try:
        meta = {"format": FORMAT, "key": key,
                **build_cache(spec.teacher, spec.x, spec.augment, spec.views, spec.seed, spec.taps, spec.accel,
                              spec.dtype, tmp, compared_at=spec.compared_at, stats=spec.stats)}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()  # a bank of the old single-file format
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def read_bank_meta(path: Path) -> dict | None:
    """The bank's meta.json when it is of this format and its files are whole, else None (rebuilt, never trusted)."""
    meta = read_json_object(path / "meta.json")
    if meta is None or meta.get("format") != FORMAT:
        return None
    try:
        for t in ["logits", "params"] + [f"feat{i}" for i in range(meta["taps"])]:
            want = int(np.prod(meta[t]["shape"])) * DTYPES[meta[t]["dtype"]].itemsize
            if (path / f"{t}.bin").stat().st_size != want:
                return None
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgedistill.checkpoint import atomic_torch_save
from edgedistill.config import AugmentConfig
from edgedistill.distill.augment import apply_augment, augment_params
from edgedistill.distill.taps import TapRecorder, as_compared

Shapes = list[tuple[int, ...]] | None  # per tap, one student sample's (C, *spatial); None stores taps whole

log = logging.getLogger("edgedistill")
FORMAT = "edgedistill-teacher-cache-v1"
FEATURE_DTYPE = torch.bfloat16  # half the bytes of float32, and float32's range (float16 overflows at 65504)


@dataclass
class TeacherCache:
    views: int
    params: torch.Tensor  # (K, N, 3) augmentation parameters
    logits: torch.Tensor  # (K, N, classes) float32
    feats: list[torch.Tensor]  # per teacher tap: (K, N, C, *spatial) bfloat16
    augment: AugmentConfig
    built: bool = False  # False when the file was reused

    def batch(self, xt: torch.Tensor, idx: torch.Tensor, gen: torch.Generator,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """One view per sample: the augmented inputs, the teacher's logits and its tap features for them."""
        view = torch.randint(0, self.views, (len(idx),), generator=gen)
        x = apply_augment(xt[idx], self.params[view, idx], self.augment).to(device, non_blocking=True)
        feats = [f[view, idx].to(device).float() for f in self.feats]
        return x, self.logits[view, idx].to(device), feats

    def view_logits(self, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The teacher's logits on every view of these samples, (B, K, classes): multi-view methods average them."""
        return self.logits[:, idx].transpose(0, 1).to(device)

    def start(self, device: torch.device, dtype: torch.dtype | None) -> None:
        """Nothing to prepare: the teacher does not run. (The live source moves it to the device here.)"""

    def close(self) -> None:
        """Nothing to release; the live source removes its hooks here."""


def cache_key(teacher: nn.Module, x: np.ndarray, y: np.ndarray, augment: AugmentConfig, views: int, seed: int,
              taps: list[str], dtype: torch.dtype | None, compared_at: Shapes = None) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(memoryview(np.ascontiguousarray(x)).cast("B"))  # no copy of the training set
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


@torch.no_grad()
def build_cache(teacher: nn.Module, xt: torch.Tensor, augment: AugmentConfig, views: int, seed: int,
                taps: list[str], device: torch.device, dtype: torch.dtype | None,
                batch_size: int = 512, compared_at: Shapes = None) -> TeacherCache:
    """Fill a preallocated bank view by view, batch by batch: memory is the bank itself, nothing more."""
    gen = torch.Generator().manual_seed(seed + 7919)  # its own stream: building a cache draws nothing from training
    if augment.crop_padding == 0 and not augment.hflip:
        views = 1  # no augmentation: one view, the input itself
    teacher.eval()
    n = len(xt)
    params = torch.stack([augment_params(tuple(xt.shape), augment, gen) for _ in range(views)])
    rec = TapRecorder(teacher, taps)
    logits: torch.Tensor | None = None
    feats: list[torch.Tensor] = []
    for v in range(views):
        for i in range(0, n, batch_size):
            xb = apply_augment(xt[i:i + batch_size], params[v, i:i + batch_size], augment).to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = teacher(xb).float().cpu()
            taken = as_stored(rec.take(), compared_at)
            if logits is None:
                logits = torch.empty(views, n, out.shape[1])
                feats = [torch.empty(views, n, *f.shape[1:], dtype=FEATURE_DTYPE) for f in taken]
            logits[v, i:i + len(out)] = out
            for bank, f in zip(feats, taken):
                bank[v, i:i + len(out)] = f.to(FEATURE_DTYPE).cpu()
    rec.remove()
    return TeacherCache(views, params, logits, feats, augment, built=True)


def load_or_build(path: Path, teacher: nn.Module, x: np.ndarray, y: np.ndarray, augment: AugmentConfig,
                  views: int, seed: int, taps: list[str], device: torch.device, dtype: torch.dtype | None,
                  max_bytes: int, write: bool = True, compared_at: Shapes = None) -> TeacherCache | None:
    """The cache at `path` when its key matches, else a new one (written there when `write`); None when the bank
    would exceed max_bytes, in which case the teacher runs live. `compared_at` stores taps at the student's size."""
    xt = torch.as_tensor(x)
    size = estimated_bytes(teacher, taps, xt[:1].to(device), len(xt), views, compared_at)
    if size > max_bytes:
        log.warning("teacher cache: %d views would take %.2f GB (> distill.cache.max_bytes %.2f GB); the teacher "
                    "runs live instead", views, size / 1e9, max_bytes / 1e9)
        return None
    key = cache_key(teacher, x, y, augment, views, seed, taps, dtype, compared_at)
    if path.exists():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if stored.get("format") == FORMAT and stored.get("key") == key:
                return TeacherCache(stored["views"], stored["params"], stored["logits"], stored["feats"], augment)
        except Exception as exc:  # an unreadable cache is rebuilt, never trusted
            log.warning("teacher cache %s unreadable (%s); rebuilding it", path, exc)
    cache = build_cache(teacher, xt, augment, views, seed, taps, device, dtype, compared_at=compared_at)
    if write:
        atomic_torch_save(path, {"format": FORMAT, "key": key, "views": cache.views, "params": cache.params,
                                 "logits": cache.logits, "feats": cache.feats})
    return cache

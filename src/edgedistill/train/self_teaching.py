"""A teacher that learns from the unlabelled pool as FixMatch does (Sohn et al., NeurIPS 2020), so that with few
labels the teacher knows more than a student trained on those labels alone, and distilling it over the pool pays.

Each step the model predicts a weakly augmented view of every pool row (the run's data.augment) without gradients;
a row predicted with confidence >= threshold is trained, on a strongly augmented view, toward that class. Labelled
rows train on the weak view by plain cross-entropy. The strong view is the weak one with a random gain and offset
and a cut-out patch: RandAugment's photometric and Cutout's occluding roles, for images and sequences alike.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgedistill.config import AugmentConfig, PseudoLabelConfig
from edgedistill.distill.method import Method
from edgedistill.distill.targets import labeled_ce
from edgedistill.train.augment import augment_batch
from edgedistill.train.mix import Mix


def cutout(x: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    """Each sample (N, C, *spatial) with one patch, `share` of each spatial side, set to 0 (the standardised mean).
    The patch's centre is anywhere in the input, so an edge may clip it, as Cutout draws it."""
    if share <= 0:
        return x
    n, spatial = x.shape[0], x.shape[2:]
    inside = torch.ones(n, *spatial, dtype=torch.bool)
    for axis, size in enumerate(spatial):
        half = max(1, round(share * size)) / 2
        centre = torch.rand(n, generator=gen) * size
        pos = torch.arange(size, dtype=torch.float32) + 0.5
        span = (pos[None] >= centre[:, None] - half) & (pos[None] < centre[:, None] + half)
        inside &= span.reshape(n, *[size if a == axis else 1 for a in range(len(spatial))])
    return x * (~inside).unsqueeze(1).to(x.device, x.dtype)


def strong_view(x: torch.Tensor, cfg: PseudoLabelConfig, gen: torch.Generator) -> torch.Tensor:
    """The weak view with a per-sample gain in 1 +- jitter and offset in +- jitter, then a cut-out patch."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    gain = 1 + cfg.jitter * (2 * torch.rand(shape, generator=gen) - 1)
    offset = cfg.jitter * (2 * torch.rand(shape, generator=gen) - 1)
    return cutout(x * gain.to(x.device, x.dtype) + offset.to(x.device, x.dtype), cfg.cutout, gen)


class SelfTeaching:
    """The trainer's batch source for a FixMatch teacher: labelled rows on their weak view, pool rows on a strong
    view, and as 'teacher outputs' the model's own logits on the pool rows' weak views (labelled rows: unused)."""

    def __init__(self, model: nn.Module, augment: AugmentConfig, cfg: PseudoLabelConfig, unlabeled: torch.Tensor,
                 stats: tuple | None = None):
        self.model, self.augment, self.cfg, self.stats = model, augment, cfg, stats
        self.unlabeled, self.dtype = unlabeled, None

    def start(self, accel: torch.device, dtype: torch.dtype | None) -> None:
        self.dtype = dtype

    def batch(self, x_rows: torch.Tensor, idx: torch.Tensor, gen: torch.Generator, accel: torch.device,
              mix: Mix | None = None) -> tuple[torch.Tensor, torch.Tensor | None, list]:
        if mix is not None:
            raise ValueError("a self-taught teacher trains on plain batches")
        weak = augment_batch(x_rows, self.augment, gen, self.stats).to(accel, non_blocking=True)
        pool = self.unlabeled[idx].to(accel)
        if not bool(pool.any()):
            return weak, None, []
        with torch.no_grad(), torch.autocast(accel.type, dtype=self.dtype, enabled=self.dtype is not None):
            own = self.model(weak[pool]).float()
        logits = own.new_zeros(len(idx), own.shape[1])
        logits[pool] = own
        xb = weak.clone()
        xb[pool] = strong_view(weak[pool], self.cfg, gen)
        return xb, logits, []

    def view_logits(self, idx: torch.Tensor, accel: torch.device) -> torch.Tensor:
        raise ValueError("a self-taught teacher has no cached views")

    def close(self) -> None:
        """Nothing to release: the model is the one being trained."""


class PseudoLabel(Method):
    """FixMatch's loss: cross-entropy on the labelled rows plus `weight` times the pool rows' cross-entropy toward
    their confident weak-view predictions, averaged over every pool row of the batch (an unconfident row adds 0)."""

    def __init__(self, cfg: PseudoLabelConfig, label_smoothing: float = 0.0):
        self.cfg, self.label_smoothing = cfg, label_smoothing

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                 targets: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = labeled_ce(student_logits, targets, self.label_smoothing)
        pool = targets < 0
        if teacher_logits is None or not bool(pool.any()):
            return {"ce": ce, "pseudo": student_logits.sum() * 0.0}
        probs = F.softmax(teacher_logits[pool].float(), dim=1)
        confidence, label = probs.max(1)
        mask = (confidence >= self.cfg.threshold).float()
        per_row = F.cross_entropy(student_logits[pool], label, reduction="none")
        return {"ce": ce, "pseudo": self.cfg.weight * (per_row * mask).mean()}

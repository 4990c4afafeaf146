"""The contract every loss meets, so the trainer and the teacher cache ask a method what it needs instead of probing.

A method is called with the student's logits, the teacher's logits (None without a teacher) and the targets, plus
the recorded tap features when it names taps, and returns named, already weighted loss terms that the trainer sums.
Targets are class indices with -1 for an unlabelled row, or mixed label mass per class: distill/targets.py says how
every method reads them (`labeled_ce`, `target_classes`).
A method that needs more of the step names it in `wants`, and the trainer passes it by keyword:
- "index": the batch's rows in the training split (a memory bank keyed by sample, as CRD keeps);
- "views": the teacher's logits for every cached augmented view of those rows, (B, K, classes); only the teacher
  cache has them, so such a method needs `distill.cache.enabled`.
`start_epoch` is told each epoch before it runs, for a weight that ramps (DKD's warm-up).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def warmup_factor(epoch: int, epochs: int, warmup_epochs: int | None) -> float:
    """min(epoch / warm-up, 1) for 1-based epochs: mdistiller's 20 of 240 epochs, so None is ceil(epochs / 12);
    0 is no warm-up. Pure in the epoch, so a resumed run ramps as an unbroken one."""
    warmup = math.ceil(epochs / 12) if warmup_epochs is None else warmup_epochs
    return min(epoch / warmup, 1.0) if warmup > 0 else 1.0


class Method:
    uses_teacher: bool = True  # False for plain CE: the trainer then never runs a teacher for it
    student_taps: list[str] = []  # student modules whose outputs the trainer records for the loss
    teacher_taps: list[str] = []  # teacher modules whose outputs the cache stores or the live teacher records
    tap_shapes: list[tuple[int, ...]] | None = None  # per tap, the (C, *spatial) the cache stores it pooled to
    trainable: nn.Module | None = None  # the method's own weights (FitNets adapters), trained with the student
    wants: frozenset[str] = frozenset()  # extra step inputs by keyword: "index", "views" (see the module's doc)

    def setup(self, student: nn.Module, teacher: nn.Module, sample: torch.Tensor,
              num_train: int | None = None) -> "Method":
        """Resolve what depends on the real models (taps, adapters); call once, before the cache or the trainer.
        `num_train`, the training split's size, sizes a bank keyed by "index" (CRD's memory)."""
        return self

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Told before epoch `epoch` (1-based) of `epochs` runs, and again on resume; the default ignores it."""

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, targets: torch.Tensor,
                 *feats: list[torch.Tensor], **extras: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class FeatureMethod:
    """A term added on top of a logit method, read from paired tap features (FitNets, AT, ...). FeatureDistillation
    owns the taps; `build` makes the method's own weights from one sample's real features, if it has any."""

    wants: frozenset[str] = frozenset()
    num_train: int | None = None  # the training split's size, set by FeatureDistillation.setup before `build`
    taps: list[str] = []  # the paired student taps' names, set by FeatureDistillation.setup before `build`

    def build(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> nn.Module | None:
        return None

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """As Method.start_epoch."""

    def __call__(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
                 **extras: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

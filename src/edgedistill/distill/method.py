"""The contract every loss meets, so the trainer and the teacher cache ask a method what it needs instead of probing.

A method is called with the student's logits, the teacher's logits (None without a teacher) and the targets, plus
the recorded tap features when it names taps, and returns named, already weighted loss terms that the trainer sums.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class Method:
    uses_teacher: bool = True  # False for plain CE: the trainer then never runs a teacher for it
    student_taps: list[str] = []  # student modules whose outputs the trainer records for the loss
    teacher_taps: list[str] = []  # teacher modules whose outputs the cache stores or the live teacher records
    tap_shapes: list[tuple[int, ...]] | None = None  # per tap, the (C, *spatial) the cache stores it pooled to
    trainable: nn.Module | None = None  # the method's own weights (FitNets adapters), trained with the student

    def setup(self, student: nn.Module, teacher: nn.Module, sample: torch.Tensor) -> "Method":
        """Resolve what depends on the real models (taps, adapters); call once, before the cache or the trainer."""
        return self

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, targets: torch.Tensor,
                 *feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

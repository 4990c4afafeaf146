"""Plain cross-entropy on hard labels: the teacher's loss and the scratch student's, the honest control."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.distill.method import Method


class CrossEntropy(Method):
    uses_teacher = False

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                 targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(student_logits, targets, label_smoothing=self.label_smoothing)}

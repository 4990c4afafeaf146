"""Plain cross-entropy on the labels: the teacher's loss and the scratch student's, the honest control (mixed
labels under distill.mix, distill/targets.py)."""
from __future__ import annotations

import torch

from edgedistill.distill.method import Method
from edgedistill.distill.targets import labeled_ce


class CrossEntropy(Method):
    uses_teacher = False

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                 targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": labeled_ce(student_logits, targets, self.label_smoothing)}

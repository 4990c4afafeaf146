"""A distillation method a user might bring, with one setting: importing this module registers it (one call), which
a config asks for with `distill.plugins: [toy_method]` (this folder on the Python path)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from edgedistill.distill import MethodSpec, register_method
from edgedistill.distill.method import Method
from edgedistill.distill.targets import labeled_ce
from edgedistill.strict import Strict


class SoftmaxL1Config(Strict):
    """distill.softmax_l1"""

    weight: float = Field(2.0, ge=0.0, description="weight of the L1 distance between the two softmaxes")


class SoftmaxL1(Method):
    """Hard-label CE plus the L1 distance between the student's and the teacher's class probabilities."""

    def __init__(self, weight: float = 2.0, label_smoothing: float = 0.0):
        self.weight, self.label_smoothing = weight, label_smoothing

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                 targets: torch.Tensor) -> dict[str, torch.Tensor]:
        l1 = (F.softmax(student_logits, dim=1) - F.softmax(teacher_logits, dim=1)).abs().sum(1).mean()
        return {"ce": labeled_ce(student_logits, targets, self.label_smoothing), "softmax_l1": self.weight * l1}


def build(settings: SoftmaxL1Config, distill, label_smoothing: float) -> SoftmaxL1:
    return SoftmaxL1(**settings.model_dump(), label_smoothing=label_smoothing)


def describe(d: dict) -> str:
    return f"softmax_l1 (weight {d['softmax_l1']['weight']})"


register_method("softmax_l1", MethodSpec("logit", build, describe, "a test's own", SoftmaxL1Config))

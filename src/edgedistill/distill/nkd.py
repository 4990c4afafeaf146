"""Normalized KD (Yang et al., ICCV 2023, "From Knowledge Distillation to Self-Knowledge Distillation"): KD split
into a target term in CE form and a non-target term over the renormalised non-target classes, so the non-target
knowledge keeps its weight however confident the teacher is.

With t the target class, S = softmax(z_s), T = softmax(z_t) (at temperature 1), and S^, T^ the softmaxes of the
non-target logits alone at temperature lambda:
  loss = CE(z_s, t) - T_t * log S_t - gamma * lambda^2 * sum_{i != t} T^_i * log S^_i
averaged over the batch; the authors' defaults are lambda=1, gamma=1.5.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from edgedistill.distill.method import Method
from edgedistill.distill.targets import labeled_ce, target_classes
from edgedistill.strict import Strict


class NKDConfig(Strict):
    """distill.nkd: the authors' defaults."""

    temperature: float = Field(1.0, gt=0.0, description="temperature of the non-target term (the target term "
                                                         "uses 1)")
    gamma: float = Field(1.5, ge=0.0, description="weight of the non-target term")


def nkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(-T_t log S_t, -lambda^2 * sum T^_i log S^_i), each a batch mean; gamma is left to the caller."""
    n, classes = student_logits.shape
    gt = F.one_hot(targets, classes).bool()
    target = -(F.softmax(teacher_logits, dim=1)[gt] * F.log_softmax(student_logits, dim=1)[gt]).mean()
    rest_s = student_logits[~gt].reshape(n, classes - 1) / temperature
    rest_t = teacher_logits[~gt].reshape(n, classes - 1) / temperature
    non_target = -(F.softmax(rest_t, dim=1) * F.log_softmax(rest_s, dim=1)).sum(1).mean()
    return target, non_target * temperature**2


def build(settings: NKDConfig, distill, label_smoothing: float) -> "NKD":
    return NKD(**settings.model_dump(), label_smoothing=label_smoothing)


def describe(d: dict) -> str:
    return f"nkd (T={d['nkd']['temperature']}, gamma={d['nkd']['gamma']})"


class NKD(Method):

    def __init__(self, temperature: float = 1.0, gamma: float = 1.5, label_smoothing: float = 0.0):
        self.temperature, self.gamma, self.label_smoothing = temperature, gamma, label_smoothing

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                 targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if teacher_logits is None:
            raise ValueError("NKD needs the teacher's logits")
        target, non_target = nkd_terms(student_logits, teacher_logits, target_classes(targets, teacher_logits),
                                       self.temperature)
        ce = labeled_ce(student_logits, targets, self.label_smoothing)
        return {"ce": ce, "nkd_target": target, "nkd_non_target": self.gamma * non_target}

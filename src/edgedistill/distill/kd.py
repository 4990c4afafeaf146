"""Hinton, Vinyals, Dean 2015: match the teacher's temperature-softened distribution.

The KL term is scaled by T^2 so its gradients keep their size as T changes; alpha trades it against hard-label CE.
With distill.logit_standardization both logits are z-scored per sample before the temperature (distill/standardize.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.distill.method import Method
from edgedistill.distill.standardize import standardized, standardized_words
from edgedistill.distill.targets import labeled_ce


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2, averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * temperature**2


def build(settings: None, distill, label_smoothing: float) -> "HintonKD":
    return HintonKD(distill.temperature, distill.alpha, label_smoothing, distill.logit_standardization)


def describe(d: dict) -> str:
    return f"kd{standardized_words(d)} (T={d['temperature']}, alpha={d['alpha']})"


class HintonKD(Method):

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, label_smoothing: float = 0.0,
                 standardize: bool = False):
        self.temperature = temperature
        self.alpha = alpha
        self.label_smoothing = label_smoothing
        self.standardize = standardize

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                 targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if teacher_logits is None:
            raise ValueError("HintonKD needs the teacher's logits")
        ce = labeled_ce(student_logits, targets, self.label_smoothing)
        kd = kd_kl(*standardized(student_logits, teacher_logits, self.standardize), self.temperature)
        return {"ce": (1.0 - self.alpha) * ce, "kd": self.alpha * kd}

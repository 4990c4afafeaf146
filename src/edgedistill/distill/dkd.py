"""Decoupled KD (Zhao et al., CVPR 2022): split the KD loss into a target-class term (TCKD, a binary KL on
"target vs. the rest") and a non-target term (NCKD, KL over the non-target classes renormalised), and weigh them
apart; plain KD ties NCKD's weight to the teacher's confidence, which DKD undoes.

As published, TCKD and NCKD (not CE) ramp in linearly: at 1-based epoch e they are scaled by min(e / warm-up, 1), the
warm-up defaulting to the first 1/12 of the epochs (mdistiller: 20 of 240). distill.logit_standardization z-scores
both logits first (distill/standardize.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.distill.method import Method, warmup_factor
from edgedistill.distill.standardize import standardized
from edgedistill.distill.targets import labeled_ce, target_classes


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each a batch-mean KL(teacher || student) scaled by T^2."""
    t = temperature
    gt = F.one_hot(targets, student_logits.shape[1]).bool()
    p_s = F.softmax(student_logits / t, dim=1)
    p_t = F.softmax(teacher_logits / t, dim=1)
    bin_s = torch.stack([p_s[gt], p_s.masked_fill(gt, 0).sum(1)], dim=1).clamp_min(1e-12)
    bin_t = torch.stack([p_t[gt], p_t.masked_fill(gt, 0).sum(1)], dim=1).clamp_min(1e-12)
    tckd = F.kl_div(bin_s.log(), bin_t, reduction="batchmean") * t**2
    log_nt_s = F.log_softmax((student_logits / t).masked_fill(gt, float("-inf")), dim=1)
    log_nt_t = F.log_softmax((teacher_logits / t).masked_fill(gt, float("-inf")), dim=1)
    mask = ~gt
    nckd = (log_nt_t.exp() * (log_nt_t - log_nt_s)).masked_fill(~mask, 0).sum(1).mean() * t**2
    return tckd, nckd


def from_config(distill, label_smoothing: float) -> "DKD":
    d = distill.dkd
    return DKD(distill.temperature, d.alpha, d.beta, d.ce_weight, label_smoothing, d.warmup_epochs,
               distill.logit_standardization)


class DKD(Method):

    def __init__(self, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0, ce_weight: float = 1.0,
                 label_smoothing: float = 0.0, warmup_epochs: int | None = None, standardize: bool = False):
        self.temperature, self.alpha, self.beta, self.ce_weight = temperature, alpha, beta, ce_weight
        self.label_smoothing, self.warmup_epochs, self.standardize = label_smoothing, warmup_epochs, standardize
        self.factor = 1.0

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """The warm-up factor from the epoch alone, so a resumed run gets the same one."""
        self.factor = warmup_factor(epoch, epochs, self.warmup_epochs)

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                 targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if teacher_logits is None:
            raise ValueError("DKD needs the teacher's logits")
        tckd, nckd = dkd_terms(*standardized(student_logits, teacher_logits, self.standardize),
                               target_classes(targets, teacher_logits), self.temperature)
        ce = labeled_ce(student_logits, targets, self.label_smoothing)
        w = self.factor
        return {"ce": self.ce_weight * ce, "tckd": w * self.alpha * tckd, "nckd": w * self.beta * nckd}

"""Decoupled KD (Zhao et al., CVPR 2022): split the KD loss into a target-class term (TCKD, a binary KL on
"target vs. the rest") and a non-target term (NCKD, KL over the non-target classes renormalised), and weigh them
apart; plain KD ties NCKD's weight to the teacher's confidence, which DKD undoes.

As published, TCKD and NCKD (not CE) ramp in linearly: at 1-based epoch e they are scaled by min(e / warm-up, 1), the
warm-up defaulting to the first 1/12 of the epochs (mdistiller: 20 of 240). distill.logit_standardization z-scores
both logits first (distill/standardize.py).

TCKD's two-way probabilities (target, rest) are taken as log probabilities by log-sum-exp, equal to mdistiller's
sum-then-log in float64. A log of the summed probabilities fails on a confident student: at +50 on its label a clamp
at 1e-12 made TCKD 13.1 instead of 24.3 (two classes, T=1) with no gradient, and past about +104 float32 holds 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from edgedistill.distill.method import Method, warmup_factor
from edgedistill.distill.spec import warmup_words
from edgedistill.distill.standardize import standardized, standardized_words
from edgedistill.distill.targets import labeled_ce, target_classes
from edgedistill.strict import Strict


class DKDConfig(Strict):
    """distill.dkd: Decoupled KD weights (mdistiller's defaults for CIFAR-100: alpha 1, beta 8, CE weight 1)."""

    alpha: float = Field(1.0, ge=0.0, description="weight of the target-class term (TCKD)")
    beta: float = Field(8.0, ge=0.0, description="weight of the non-target term (NCKD)")
    ce_weight: float = Field(1.0, ge=0.0)
    warmup_epochs: int | None = Field(
        None, ge=0, description="TCKD and NCKD ramp in over this many epochs (factor epoch/warmup, 1-based), as "
                                "published; default: the first 1/12 of the epochs, at least 1 (mdistiller: 20 of "
                                "240); 0 turns the ramp off")


def target_and_rest(logits: torch.Tensor, gt: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, 2) log probabilities of "the target" and "any other class" at T, by log-sum-exp: the log of the rest's
    summed probabilities stays exact however confident the model is, where log(1 - p_target) would round to log 0."""
    log_p = F.log_softmax(logits / temperature, dim=1)
    return torch.stack([log_p[gt], torch.logsumexp(log_p.masked_fill(gt, float("-inf")), dim=1)], dim=1)


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each a batch-mean KL(teacher || student) scaled by T^2, all in log space."""
    t = temperature
    gt = F.one_hot(targets, student_logits.shape[1]).bool()
    tckd = F.kl_div(target_and_rest(student_logits, gt, t), target_and_rest(teacher_logits, gt, t),
                    reduction="batchmean", log_target=True) * t**2
    log_nt_s = F.log_softmax((student_logits / t).masked_fill(gt, float("-inf")), dim=1)
    log_nt_t = F.log_softmax((teacher_logits / t).masked_fill(gt, float("-inf")), dim=1)
    nckd = (log_nt_t.exp() * (log_nt_t - log_nt_s)).masked_fill(gt, 0).sum(1).mean() * t**2
    return tckd, nckd


def build(settings: DKDConfig, distill, label_smoothing: float) -> "DKD":
    return DKD(distill.temperature, **settings.model_dump(), label_smoothing=label_smoothing,
               standardize=distill.logit_standardization)


def describe(d: dict) -> str:
    s = d["dkd"]
    return (f"dkd{standardized_words(d)} (T={d['temperature']}, alpha={s['alpha']}, beta={s['beta']}, "
            f"CE weight {s['ce_weight']}{warmup_words(s.get('warmup_epochs', 0))})")


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

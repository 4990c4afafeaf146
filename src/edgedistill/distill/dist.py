"""DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher"): match the teacher's
predictions by correlation, not by exact probabilities, so a much stronger teacher is not a target out of reach.

With p = softmax(z/T) for student and teacher, rows are samples and columns classes:
  inter = 1 - mean over samples of pearson(p_s[i, :], p_t[i, :])   (relations between classes within a sample)
  intra = 1 - mean over classes of pearson(p_s[:, c], p_t[:, c])   (relations between samples within a class)
  loss  = ce_weight * CE + T^2 * (beta * inter + gamma * intra)
The authors' recipes (hunto/DIST_KD, configs/strategies/distill/resnet_dist.yaml for ImageNet, dist_cifar.yaml for
CIFAR-100) weigh DIST(beta=1, gamma=1) by kd_loss_weight 2 beside CE weight 1, so beta = gamma = 2 on both, with
T=1 on ImageNet and T=4 on CIFAR-100. With one sample per batch the intra term is a constant 1 (a column of one value
has no correlation) and teaches nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from edgedistill.distill.method import Method
from edgedistill.distill.standardize import standardized, standardized_words
from edgedistill.distill.targets import labeled_ce
from edgedistill.strict import Strict

EPS = 1e-8


class DISTConfig(Strict):
    """distill.dist: the authors' ImageNet recipe, T 1 with beta = gamma = 2 (their configs weigh DIST(beta=1,
    gamma=1) by kd_loss_weight 2); their CIFAR-100 recipe is T 4 with the same weights."""

    temperature: float = Field(1.0, gt=0.0, description="DIST's own temperature (distill.temperature is KD's)")
    beta: float = Field(2.0, ge=0.0, description="weight of the inter-class relation (per-sample correlation)")
    gamma: float = Field(2.0, ge=0.0, description="weight of the intra-class relation (per-class correlation)")
    ce_weight: float = Field(1.0, ge=0.0)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row of a with the same row of b."""
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + EPS)


def dist_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(inter, intra), each 1 - mean Pearson correlation, scaled by T^2."""
    p_s = F.softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits / temperature, dim=1)
    inter = 1 - pearson(p_s, p_t).mean()
    intra = 1 - pearson(p_s.T, p_t.T).mean()
    return inter * temperature**2, intra * temperature**2


def build(settings: DISTConfig, distill, label_smoothing: float) -> "DIST":
    return DIST(**settings.model_dump(), label_smoothing=label_smoothing, standardize=distill.logit_standardization)


def describe(d: dict) -> str:
    s = d["dist"]
    return (f"dist{standardized_words(d)} (T={s['temperature']}, beta={s['beta']}, gamma={s['gamma']}, "
            f"CE weight {s['ce_weight']})")


class DIST(Method):

    def __init__(self, temperature: float = 1.0, beta: float = 2.0, gamma: float = 2.0, ce_weight: float = 1.0,
                 label_smoothing: float = 0.0, standardize: bool = False):
        self.temperature, self.beta, self.gamma, self.ce_weight = temperature, beta, gamma, ce_weight
        self.label_smoothing, self.standardize = label_smoothing, standardize

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                 targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if teacher_logits is None:
            raise ValueError("DIST needs the teacher's logits")
        inter, intra = dist_terms(*standardized(student_logits, teacher_logits, self.standardize), self.temperature)
        ce = labeled_ce(student_logits, targets, self.label_smoothing)
        return {"ce": self.ce_weight * ce, "dist_inter": self.beta * inter, "dist_intra": self.gamma * intra}

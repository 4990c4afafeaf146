"""Attention transfer (Zagoruyko and Komodakis, ICLR 2017): match where the networks look. Each feature map
becomes an attention map, the channel mean of |F|^p, flattened and L2-normalised; the loss is the mean squared
difference of student and teacher maps, summed over tap pairs. Channels need not match, so no adapter is learned.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.distill.method import FeatureMethod
from edgedistill.distill.taps import align


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


def at_loss(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    s, t = align(student.float(), teacher.float())
    return (attention_map(s, p) - attention_map(t, p)).pow(2).mean()


def from_config(distill, label_smoothing: float) -> "AttentionTransfer":
    return AttentionTransfer(distill.at.weight, distill.at.p)


class AttentionTransfer(FeatureMethod):
    def __init__(self, weight: float = 1000.0, p: float = 2.0):
        self.weight, self.p = weight, p

    def __call__(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        total = sum(at_loss(s, t, self.p) for s, t in zip(student_feats, teacher_feats))
        return {"at": self.weight * total}

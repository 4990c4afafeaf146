"""FitNets (Romero et al., ICLR 2015): the student's feature map, through a learned 1x1 adapter, regresses the
teacher's at the paired tap (a "hint"), as a mean squared error added to the student's hard-label loss.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgedistill.distill.method import FeatureMethod
from edgedistill.distill.taps import align


def adapter(student_channels: int, teacher_channels: int, spatial_rank: int) -> nn.Module:
    conv = nn.Conv2d if spatial_rank == 2 else nn.Conv1d
    return conv(student_channels, teacher_channels, kernel_size=1, bias=False)


def from_config(distill, label_smoothing: float) -> "FitNets":
    return FitNets(distill.fitnets.weight)


class FitNets(FeatureMethod):
    """One adapter per tap pair, built from the first batch's shapes by `build`."""

    def __init__(self, weight: float = 100.0):
        self.weight = weight
        self.adapters = nn.ModuleList()

    def build(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> nn.ModuleList:
        for s, t in zip(student_feats, teacher_feats):
            s, t = align(s, t)
            self.adapters.append(adapter(s.shape[1], t.shape[1], s.dim() - 2))
        return self.adapters

    def hint_loss(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros((), device=student_feats[0].device)
        for a, s, t in zip(self.adapters, student_feats, teacher_feats):
            s, t = align(s.float(), t.float())
            total = total + F.mse_loss(a(s), t)
        return total

    def __call__(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"fitnets": self.weight * self.hint_loss(student_feats, teacher_feats)}

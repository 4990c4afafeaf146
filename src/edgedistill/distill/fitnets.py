"""FitNets (Romero et al., ICLR 2015): the student's feature map, through a learned 1x1 adapter, regresses the
teacher's at the paired tap (a "hint"), as a mean squared error added to the student's hard-label loss.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from edgedistill.distill.method import FeatureMethod
from edgedistill.distill.taps import align
from edgedistill.strict import Strict


class FitNetsConfig(Strict):
    """distill.fitnets"""

    weight: float = Field(100.0, ge=0.0, description="weight of the hint MSE (RepDistiller uses 100); the hint's "
                          "scale follows the teacher's features: from a width-64 ResNet on Fashion-MNIST, 100 "
                          "diverged at lr 0.1 and 1 trained")


def adapter(student_channels: int, teacher_channels: int, spatial_rank: int) -> nn.Module:
    conv = nn.Conv2d if spatial_rank == 2 else nn.Conv1d
    return conv(student_channels, teacher_channels, kernel_size=1, bias=False)


def build(settings: FitNetsConfig, distill, label_smoothing: float) -> "FitNets":
    return FitNets(**settings.model_dump())


def describe(d: dict) -> str:
    return f"fitnets (weight {d['fitnets']['weight']})"


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

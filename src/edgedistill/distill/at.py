"""Attention transfer (Zagoruyko and Komodakis, ICLR 2017): match where the networks look. Each feature map
becomes an attention map, the channel mean of |F|^p, flattened and L2-normalised; the loss is the mean squared
difference of student and teacher maps, summed over tap pairs. Channels need not match, so no adapter is learned.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from pydantic import Field

from edgedistill.distill.method import FeatureMethod
from edgedistill.distill.taps import align
from edgedistill.strict import Strict

log = logging.getLogger("edgedistill")


class ATConfig(Strict):
    """distill.at"""

    weight: float = Field(1000.0, ge=0.0, description="weight of the attention-map loss (RepDistiller uses 1000)")
    p: float = Field(2.0, gt=0.0, description="attention map: channel mean of |F|^p")


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


def at_loss(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    s, t = align(student.float(), teacher.float())
    return (attention_map(s, p) - attention_map(t, p)).pow(2).mean()


def build(settings: ATConfig, distill, label_smoothing: float) -> "AttentionTransfer":
    return AttentionTransfer(**settings.model_dump())


def describe(d: dict) -> str:
    return f"at (weight {d['at']['weight']}, p={d['at']['p']})"


class AttentionTransfer(FeatureMethod):
    def __init__(self, weight: float = 1000.0, p: float = 2.0):
        self.weight, self.p = weight, p

    def build(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> None:
        """No weights of its own; a tap pair of one position gives maps that carry nothing, which it says."""
        flat = [name for name, s, t in zip(self.taps, student_feats, teacher_feats)
                if align(s, t)[0][0, 0].numel() == 1]
        if flat:
            log.warning("attention transfer on taps %s compares maps of one position, which carry no information; "
                        "name taps with a spatial or time axis in distill.student_taps/teacher_taps", flat)
        return None

    def __call__(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        total = sum(at_loss(s, t, self.p) for s, t in zip(student_feats, teacher_feats))
        return {"at": self.weight * total}

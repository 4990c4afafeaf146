"""ReviewKD (Chen, Liu, Zhao, Jia, CVPR 2021, "Distilling Knowledge via Knowledge Review"): each teacher stage is
regressed from the student's features at that stage and every deeper one, fused deep to shallow.

As the authors' code (dvlab-research/ReviewKD, also mdistiller's reviewkd.py): at each paired tap the student's map
goes through a 1x1 conv + BN to `mid_channels` (one width for all levels, by default min(512, the deepest student
tap's channels) as there); Attention-Based Fusion (ABF) upsamples the deeper level's fused map to this level's size
(nearest), predicts two attention maps from the concatenation (1x1 conv, sigmoid) and takes their weighted sum; a 3x3
conv + BN then maps the fused map to the teacher's channels. The Hierarchical Context Loss (HCL) compares it with the
teacher's map by MSE at full size plus MSE after average pooling to 4, 2 and 1 (levels as large as the map are left
out), weighted 1, 1/2, 1/4, ... over the levels kept and divided by the weights' sum. Maps of 1-D taps use Conv1d.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from edgedistill.distill.method import FeatureMethod, warmup_factor
from edgedistill.distill.spec import warmup_words
from edgedistill.distill.taps import align
from edgedistill.strict import Strict

HCL_LEVELS = (4, 2, 1)


class ReviewKDConfig(Strict):
    """distill.reviewkd: weight 1 as in the authors' ImageNet code and mdistiller's ImageNet config, ramped in over
    the first 1/12 of the epochs (mdistiller's 20 of 240 on CIFAR-100). Their CIFAR-100 recipes weigh it more: 5 in
    mdistiller's config and for most of the authors' pairs (8, 0.6 and 1 for others)."""

    weight: float = Field(1.0, ge=0.0, description="weight of the hierarchical context loss, summed over tap pairs "
                          "(CIFAR-100 recipes: 5)")
    warmup_epochs: int | None = Field(
        None, ge=0, description="the weight ramps in as min(epoch / warmup, 1) (1-based epochs); default: the "
                                "first 1/12 of the epochs, at least 1; 0 turns the ramp off")


def pool(f: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return F.adaptive_avg_pool1d(f, size) if len(size) == 1 else F.adaptive_avg_pool2d(f, size)


def hcl_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """HCL of one level, as the official hcl_loss (a level is kept when it pools the map to a smaller size)."""
    spatial = tuple(student.shape[2:])
    loss, weight, total = F.mse_loss(student, teacher), 1.0, 1.0
    for level in HCL_LEVELS:
        size = tuple(min(level, s) for s in spatial)
        if size == spatial:
            continue
        weight /= 2
        loss = loss + weight * F.mse_loss(pool(student, size), pool(teacher, size))
        total += weight
    return loss / total


def resized(f: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`f` at `like`'s spatial size (nearest); across ranks (a 1-D tap above a 2-D one) its mean is spread."""
    if f.dim() != like.dim():
        f = f.flatten(2).mean(2).reshape(*f.shape[:2], *[1] * (like.dim() - 2))
    return F.interpolate(f, size=like.shape[2:], mode="nearest")


def batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """BN, except on one value per channel (a last batch of one sample at a 1x1 tap), where it uses running stats."""
    if bn.training and x[:, 0].numel() == 1:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(x)


class ABF(nn.Module):
    """One level: the student's map to `mid` channels, fused with the deeper level's when `fuse`, then to `out`."""

    def __init__(self, rank: int, c_in: int, mid: int, c_out: int, fuse: bool):
        super().__init__()
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if rank == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.conv1, self.bn1 = conv(c_in, mid, 1, bias=False), bn(mid)
        self.conv2, self.bn2 = conv(mid, c_out, 3, padding=1, bias=False), bn(c_out)
        self.att_conv = nn.Sequential(conv(2 * mid, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1.weight, a=1)
        nn.init.kaiming_uniform_(self.conv2.weight, a=1)

    def forward(self, x: torch.Tensor, deeper: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the map compared with the teacher's, the fused map handed to the next shallower level)."""
        x = batch_norm(self.bn1, self.conv1(x))
        if self.att_conv is not None and deeper is not None:
            deeper = resized(deeper, x)
            z = self.att_conv(torch.cat([x, deeper], dim=1))
            x = x * z[:, :1] + deeper * z[:, 1:2]
        return batch_norm(self.bn2, self.conv2(x)), x


def build(settings: ReviewKDConfig, distill, label_smoothing: float) -> "ReviewKD":
    return ReviewKD(**settings.model_dump())


def describe(d: dict) -> str:
    return f"reviewkd (weight {d['reviewkd']['weight']}{warmup_words(d['reviewkd']['warmup_epochs'])})"


class ReviewKD(FeatureMethod):
    """One ABF per tap pair, built by `build` from real shapes; the weight ramps up over the warm-up epochs."""

    def __init__(self, weight: float = 1.0, warmup_epochs: int | None = None, mid_channels: int | None = None):
        self.weight, self.warmup_epochs, self.mid_channels = weight, warmup_epochs, mid_channels
        self.factor = 1.0
        self.abfs = nn.ModuleList()

    def build(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> nn.ModuleList:
        pairs = [align(s, t) for s, t in zip(student_feats, teacher_feats)]
        mid = self.mid_channels or min(512, pairs[-1][0].shape[1])
        for i, (s, t) in enumerate(pairs):
            self.abfs.append(ABF(s.dim() - 2, s.shape[1], mid, t.shape[1], fuse=i < len(pairs) - 1))
        return self.abfs

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """The official recipe: weight * min(epoch / warm-up, 1), warm-up 20 of 240 epochs (here 1/12 by default)."""
        self.factor = warmup_factor(epoch, epochs, self.warmup_epochs)

    def review(self, student_feats: list[torch.Tensor],
               teacher_feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The fused student maps, shallow to deep, and the teacher maps they are compared with."""
        pairs = [align(s.float(), t.float()) for s, t in zip(student_feats, teacher_feats)]
        outs: list[torch.Tensor] = [None] * len(pairs)  # type: ignore[list-item]
        deeper = None
        for i in reversed(range(len(pairs))):
            outs[i], deeper = self.abfs[i](pairs[i][0], deeper)
        return outs, [t for _, t in pairs]

    def __call__(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        outs, targets = self.review(student_feats, teacher_feats)
        total = sum(hcl_loss(o.float(), t) for o, t in zip(outs, targets))
        return {"reviewkd": self.weight * self.factor * total}

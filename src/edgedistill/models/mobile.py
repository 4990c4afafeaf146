"""Lightweight student: MobileNetV2-style inverted residual blocks (depthwise-separable) with a width multiplier."""
from __future__ import annotations

import torch
import torch.nn as nn

from edgedistill.models import register_model
from edgedistill.models.layers import batchnorm, conv, global_avgpool, in_channels, input_adapter, spatial_rank
from edgedistill.roles import Side

# (channels, blocks, first stride) per stage, sized for 28x28 images and short sequences.
DEFAULT_STAGES = ((16, 1, 1), (24, 2, 2), (32, 2, 2), (64, 2, 1))


def scaled(channels: int, width_mult: float) -> int:
    return max(8, int(round(channels * width_mult / 8)) * 8)


def conv_bn_relu(rank: int, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(conv(rank, c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
                         batchnorm(rank, c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expand, depthwise 3x3, 1x1 linear project; a residual when shape allows. expand=1 is MobileNetV1's block."""

    def __init__(self, rank: int, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers = [] if expand == 1 else [conv_bn_relu(rank, c_in, hidden, 1)]
        layers += [conv_bn_relu(rank, hidden, hidden, 3, stride, groups=hidden),
                   conv(rank, hidden, c_out, 1, bias=False), batchnorm(rank, c_out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNet(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width_mult: float = 1.0, expand: int = 4,
                 stages: tuple[tuple[int, int, int], ...] = DEFAULT_STAGES, dropout: float = 0.0, stem_stride: int = 1):
        super().__init__()
        rank = spatial_rank(input_shape)
        self.adapter = input_adapter(input_shape)
        c_in = scaled(stages[0][0], width_mult)
        self.stem = conv_bn_relu(rank, in_channels(input_shape), c_in, 3, stride=stem_stride)
        blocks = []
        for channels, n, stride in stages:
            c_out = scaled(channels, width_mult)
            for j in range(n):
                blocks.append(InvertedResidual(rank, c_in, c_out, stride if j == 0 else 1, expand))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = global_avgpool(rank)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, num_classes))
        self.feature_taps = ["blocks"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(self.stem(self.adapter(x)))))


@register_model("mobilenet", side=Side.STUDENT, family="lightweight",
                summary="MobileNetV2-style depthwise-separable CNN (1-D or 2-D); args width_mult, expand, stages, "
                        "stem_stride (2 for 96x96 camera images)")
def mobilenet(input_shape: tuple[int, ...], num_classes: int, width_mult: float = 1.0, expand: int = 4,
              stages: list[list[int]] = DEFAULT_STAGES, dropout: float = 0.0, stem_stride: int = 1) -> MobileNet:
    return MobileNet(input_shape, num_classes, width_mult, expand, tuple(tuple(s) for s in stages), dropout,
                     stem_stride)

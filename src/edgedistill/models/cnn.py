"""ResNet-style CNN teacher for images and sequences alike (basic residual blocks, width and depth configurable)."""
from __future__ import annotations

import torch
import torch.nn as nn

from edgedistill.models import register_model
from edgedistill.models.layers import batchnorm, conv, global_avgpool, in_channels, input_adapter, spatial_rank
from edgedistill.roles import Side


class BasicBlock(nn.Module):
    def __init__(self, rank: int, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = conv(rank, c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = batchnorm(rank, c_out)
        self.conv2 = conv(rank, c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = batchnorm(rank, c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(conv(rank, c_in, c_out, 1, stride=stride, bias=False), batchnorm(rank, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, then stages of basic blocks; each stage after the first halves the resolution and doubles width."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 32,
                 blocks: tuple[int, ...] = (2, 2, 2), dropout: float = 0.0, stem_stride: int = 1):
        super().__init__()
        rank = spatial_rank(input_shape)
        self.adapter = input_adapter(input_shape)
        self.stem = nn.Sequential(conv(rank, in_channels(input_shape), width, 3, stride=stem_stride, padding=1,
                                       bias=False),
                                  batchnorm(rank, width), nn.ReLU(inplace=True))
        stages, c_in = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            layers = [BasicBlock(rank, c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1)
                      for j in range(n)]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = global_avgpool(rank)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, num_classes))
        self.feature_taps = [f"stages.{i}" for i in range(len(blocks))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stages(self.stem(self.adapter(x)))))


@register_model("resnet", side=Side.TEACHER, family="cnn",
                summary="ResNet-style CNN (1-D or 2-D); args width, blocks, stem_stride (2 or 4 for camera images)")
def resnet(input_shape: tuple[int, ...], num_classes: int, width: int = 32, blocks: list[int] = (2, 2, 2),
           dropout: float = 0.0, stem_stride: int = 1) -> ResNet:
    return ResNet(input_shape, num_classes, width=width, blocks=tuple(blocks), dropout=dropout, stem_stride=stem_stride)

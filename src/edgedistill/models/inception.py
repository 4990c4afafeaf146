"""InceptionTime (Ismail Fawaz et al., 2020): the 1-D CNN teacher that the time-series bake-offs measure against.

Each Inception module squeezes its input through a 1x1 bottleneck, then runs three long convolutions (kernels 39,
19 and 9 by default) and a max-pool branch side by side; a residual shortcut joins every third module.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from edgedistill.models import register_model
from edgedistill.models.layers import in_channels, input_adapter
from edgedistill.roles import Side


class InceptionModule(nn.Module):
    def __init__(self, c_in: int, filters: int, kernels: tuple[int, ...], bottleneck: int):
        super().__init__()
        self.bottleneck = nn.Conv1d(c_in, bottleneck, 1, bias=False) if c_in > 1 else nn.Identity()
        width = bottleneck if c_in > 1 else c_in
        self.convs = nn.ModuleList(nn.Conv1d(width, filters, k, padding=k // 2, bias=False) for k in kernels)
        self.pool_branch = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(c_in, filters, 1, bias=False))
        self.bn = nn.BatchNorm1d(filters * (len(kernels) + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        out = torch.cat([c(z) for c in self.convs] + [self.pool_branch(x)], dim=1)
        return torch.relu(self.bn(out))


class InceptionTime(nn.Module):
    """`depth` Inception modules with a residual every third, global average pooling, a linear head."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, filters: int = 32, depth: int = 6,
                 kernels: tuple[int, ...] = (39, 19, 9), bottleneck: int = 32, dropout: float = 0.0):
        super().__init__()
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"kernels {kernels} must be odd, so that a series keeps its length")
        self.adapter = input_adapter(input_shape)
        c_in, width = in_channels(input_shape), filters * (len(kernels) + 1)
        self.modules_ = nn.ModuleList()
        self.shortcuts = nn.ModuleDict()
        res_in = c_in
        for d in range(depth):
            self.modules_.append(InceptionModule(c_in if d == 0 else width, filters, tuple(kernels), bottleneck))
            if d % 3 == 2:
                self.shortcuts[str(d)] = nn.Sequential(nn.Conv1d(res_in, width, 1, bias=False), nn.BatchNorm1d(width))
                res_in = width
        self.pool = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))
        self.feature_taps = [f"modules_.{depth - 1}"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapter(x)
        residual = x
        for d, module in enumerate(self.modules_):
            x = module(x)
            if str(d) in self.shortcuts:
                x = torch.relu(x + self.shortcuts[str(d)](residual))
                residual = x
        return self.head(self.pool(x))


@register_model("inception_time", side=Side.TEACHER, family="cnn",
                summary="InceptionTime 1-D CNN for time series; args filters, depth, kernels, bottleneck",
                inputs=("features", "sequence"))
def inception_time(input_shape: tuple[int, ...], num_classes: int, filters: int = 32, depth: int = 6,
                   kernels: list[int] = (39, 19, 9), bottleneck: int = 32, dropout: float = 0.0) -> InceptionTime:
    if len(input_shape) == 3:
        raise ValueError("inception_time is a 1-D model: give it sequences (channels, length) or features")
    return InceptionTime(input_shape, num_classes, filters, depth, tuple(kernels), bottleneck, dropout)

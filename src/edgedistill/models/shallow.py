"""Shallow students: an MLP, and a plain CNN of a few conv-BN-ReLU-pool stages (two convs by default)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from edgedistill.models import register_model
from edgedistill.models.layers import (batchnorm, conv, global_avgpool, in_channels, input_adapter, maxpool,
                                       spatial_rank)
from edgedistill.roles import Side


class MLP(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (256, 128),
                 dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for i, h in enumerate(hidden):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        self.feature_taps = ["body"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ConvNet(nn.Module):
    """Stages of `convs_per_stage` 3-wide conv-BN-ReLU, each closed by a 2x max-pool; flatten or average head."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, channels: tuple[int, ...] = (32, 64),
                 convs_per_stage: int = 1, head: str = "flatten", dropout: float = 0.0):
        super().__init__()
        if head not in ("flatten", "avg"):
            raise ValueError(f"head must be 'flatten' or 'avg', got {head!r}")
        rank = spatial_rank(input_shape)
        self.adapter = input_adapter(input_shape)
        stages, c_in = [], in_channels(input_shape)
        for c_out in channels:
            layers: list[nn.Module] = []
            for _ in range(convs_per_stage):
                layers += [conv(rank, c_in, c_out, 3, padding=1, bias=False), batchnorm(rank, c_out),
                           nn.ReLU(inplace=True)]
                c_in = c_out
            layers.append(maxpool(rank))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        if head == "avg":
            self.pool, width = global_avgpool(rank), c_in
        else:
            extent = input_shape[-2:] if rank == 2 else input_shape[-1:]
            reduced = [s for s in extent]
            for _ in channels:
                reduced = [math.ceil(s / 2) for s in reduced]
            self.pool, width = nn.Flatten(), c_in * math.prod(reduced)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))
        self.feature_taps = [f"stages.{i}" for i in range(len(channels))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stages(self.adapter(x))))


@register_model("mlp", side=Side.STUDENT, family="shallow", summary="multi-layer perceptron; args hidden, dropout")
def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: list[int] = (256, 128), dropout: float = 0.0) -> MLP:
    return MLP(input_shape, num_classes, tuple(hidden), dropout)


@register_model("convnet", side=Side.STUDENT, family="shallow",
                summary="plain CNN, 2 convs by default (1-D or 2-D); args channels, convs_per_stage, head")
def convnet(input_shape: tuple[int, ...], num_classes: int, channels: list[int] = (32, 64), convs_per_stage: int = 1,
            head: str = "flatten", dropout: float = 0.0) -> ConvNet:
    return ConvNet(input_shape, num_classes, tuple(channels), convs_per_stage, head, dropout)

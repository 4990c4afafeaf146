"""Shared building blocks: pick 1-D or 2-D layers from the input's rank, so each model serves both."""
from __future__ import annotations

import torch
import torch.nn as nn


def spatial_rank(input_shape: tuple[int, ...]) -> int:
    """1 for features (F,) and sequences (C, L); 2 for images (C, H, W)."""
    if len(input_shape) not in (1, 2, 3):
        raise ValueError(f"input_shape {input_shape} must be (F,), (C, L) or (C, H, W)")
    return 2 if len(input_shape) == 3 else 1


def in_channels(input_shape: tuple[int, ...]) -> int:
    return 1 if len(input_shape) == 1 else input_shape[0]


def conv(rank: int, *args, **kwargs) -> nn.Module:
    return (nn.Conv2d if rank == 2 else nn.Conv1d)(*args, **kwargs)


def batchnorm(rank: int, channels: int) -> nn.Module:
    return (nn.BatchNorm2d if rank == 2 else nn.BatchNorm1d)(channels)


def maxpool(rank: int, size: int = 2) -> nn.Module:
    return (nn.MaxPool2d if rank == 2 else nn.MaxPool1d)(size, ceil_mode=True)


def global_avgpool(rank: int) -> nn.Module:
    return nn.Sequential((nn.AdaptiveAvgPool2d if rank == 2 else nn.AdaptiveAvgPool1d)(1), nn.Flatten())


class AddChannel(nn.Module):
    """Turns tabular (N, F) into a one-channel sequence (N, 1, F) so convolutional models accept it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)


def input_adapter(input_shape: tuple[int, ...]) -> nn.Module:
    return AddChannel() if len(input_shape) == 1 else nn.Identity()

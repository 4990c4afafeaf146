"""Transformer teacher: patches of an image or a sequence become tokens for a pre-norm encoder with a class token."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from edgedistill.models import register_model
from edgedistill.models.layers import conv, in_channels, input_adapter, spatial_rank
from edgedistill.roles import Side


class PatchTransformer(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, patch: int = 4, dim: int = 96,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.1):
        super().__init__()
        rank = spatial_rank(input_shape)
        self.adapter = input_adapter(input_shape)
        extent = input_shape[-2:] if rank == 2 else input_shape[-1:]
        if any(s % patch for s in extent):
            raise ValueError(f"patch={patch} must divide the input extent {tuple(extent)}")
        n_tokens = math.prod(s // patch for s in extent)
        self.embed = conv(rank, in_channels(input_shape), dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n_tokens + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.feature_taps = ["encoder"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(self.adapter(x)).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.encoder(tokens)[:, 0]))


@register_model("transformer", side=Side.TEACHER, family="transformer",
                summary="patch/token Transformer encoder; args patch, dim, depth, heads")
def transformer(input_shape: tuple[int, ...], num_classes: int, patch: int = 4, dim: int = 96, depth: int = 4,
                heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.1) -> PatchTransformer:
    return PatchTransformer(input_shape, num_classes, patch, dim, depth, heads, mlp_ratio, dropout)

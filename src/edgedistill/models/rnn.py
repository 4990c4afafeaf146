"""Recurrent teachers (GRU, LSTM): sequences run over time, images run over rows, features run one at a time."""
from __future__ import annotations

import torch
import torch.nn as nn

from edgedistill.models import register_model
from edgedistill.roles import Side


def as_sequence(x: torch.Tensor) -> torch.Tensor:
    """(N, F) -> (N, F, 1); (N, C, L) -> (N, L, C); (N, C, H, W) -> (N, H, C*W)."""
    if x.dim() == 2:
        return x.unsqueeze(-1)
    if x.dim() == 3:
        return x.transpose(1, 2)
    n, c, h, w = x.shape
    return x.permute(0, 2, 1, 3).reshape(n, h, c * w)


def step_features(input_shape: tuple[int, ...]) -> int:
    if len(input_shape) == 1:
        return 1
    if len(input_shape) == 2:
        return input_shape[0]
    return input_shape[0] * input_shape[2]


class RecurrentClassifier(nn.Module):
    """A stacked (optionally bidirectional) GRU/LSTM; the head reads the mean and the last of its outputs."""

    def __init__(self, cell: str, input_shape: tuple[int, ...], num_classes: int, hidden: int = 128,
                 layers: int = 2, bidirectional: bool = True, dropout: float = 0.0):
        super().__init__()
        rnn_cls = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(step_features(input_shape), hidden, num_layers=layers, batch_first=True,
                           bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        width = hidden * (2 if bidirectional else 1)
        self.norm = nn.LayerNorm(2 * width)
        self.head = nn.Linear(2 * width, num_classes)
        self.feature_taps = ["rnn"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(as_sequence(x))
        return self.head(self.norm(torch.cat([out.mean(dim=1), out[:, -1]], dim=1)))


@register_model("gru", side=Side.TEACHER, family="rnn", summary="GRU classifier; args hidden, layers, bidirectional")
def gru(input_shape: tuple[int, ...], num_classes: int, hidden: int = 128, layers: int = 2,
        bidirectional: bool = True, dropout: float = 0.0) -> RecurrentClassifier:
    return RecurrentClassifier("gru", input_shape, num_classes, hidden, layers, bidirectional, dropout)


@register_model("lstm", side=Side.TEACHER, family="rnn", summary="LSTM classifier; args hidden, layers, bidirectional")
def lstm(input_shape: tuple[int, ...], num_classes: int, hidden: int = 128, layers: int = 2,
         bidirectional: bool = True, dropout: float = 0.0) -> RecurrentClassifier:
    return RecurrentClassifier("lstm", input_shape, num_classes, hidden, layers, bidirectional, dropout)

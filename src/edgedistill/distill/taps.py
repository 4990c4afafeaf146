"""Feature taps: read intermediate outputs by module name with forward hooks, in any model family, and bring a
student's and a teacher's features to one layout so a feature loss can compare them.

Layout: (N, C, *spatial). Convolutions already give it; RNN and Transformer outputs (N, L, D) are transposed to
(N, D, L); a flat (N, C) vector becomes (N, C, 1). Two maps of different spatial rank meet as 1-D sequences (a 2-D
grid is read row by row, as patch tokens are); spatial sizes meet at the smaller one by average pooling.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgedistill.errors import UserError

CHANNELS_LAST = (nn.RNNBase, nn.TransformerEncoder, nn.TransformerEncoderLayer, nn.MultiheadAttention)


def resolve_taps(model: nn.Module, names: list[str] | None, role: str) -> list[str]:
    """The named modules, or the model's own `feature_taps` when none are named; unknown names are refused."""
    if names is None:
        names = list(getattr(model, "feature_taps", []))
        if not names:
            raise UserError(f"distill.{role}_taps: the {role} declares no feature_taps; name its modules, "
                            f"e.g. {[n for n, _ in model.named_children()][:3]}")
        return names
    if not names:
        raise UserError(f"distill.{role}_taps: an empty list names no module; leave it out to use the model's "
                        "feature_taps")
    known = dict(model.named_modules())
    for n in names:
        if n not in known:
            raise UserError(f"distill.{role}_taps: the {role} has no module {n!r}; "
                            f"choose from {[k for k in known if k][:12]}")
    return names


def pair_taps(student: list[str], teacher: list[str]) -> list[tuple[str, str]]:
    """Deepest taps paired with deepest: the last k of each, k the shorter list's length."""
    k = min(len(student), len(teacher))
    return list(zip(student[len(student) - k:], teacher[len(teacher) - k:]))


def to_map(module: nn.Module, out) -> torch.Tensor:
    if isinstance(out, tuple):  # RNNs return (output, hidden)
        out = out[0]
    if isinstance(module, CHANNELS_LAST) and out.dim() == 3:
        out = out.transpose(1, 2)
    if out.dim() == 2:
        out = out[:, :, None]
    return out


class TapRecorder:
    """Keeps the latest output of each named module, in layout (N, C, *spatial)."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.names = names
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [model.get_submodule(n).register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def hook(module: nn.Module, _inputs, out) -> None:
            self.outputs[name] = to_map(module, out)
        return hook

    def take(self) -> list[torch.Tensor]:
        return [self.outputs.pop(n) for n in self.names]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _as_sequence(f: torch.Tensor) -> torch.Tensor:
    return f.flatten(2) if f.dim() > 3 else f


def _pool(f: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(f.shape[2:]) == size:
        return f
    return F.adaptive_avg_pool1d(f, size) if len(size) == 1 else F.adaptive_avg_pool2d(f, size)


def align(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both maps with the same spatial shape (channels may differ)."""
    student, teacher = (f[:, :, None] if f.dim() == 2 else f for f in (student, teacher))
    if student.dim() != teacher.dim():
        student, teacher = _as_sequence(student), _as_sequence(teacher)
    if student.dim() > 4:
        raise ValueError(f"feature maps of rank {student.dim()} are not supported")
    size = tuple(min(a, b) for a, b in zip(student.shape[2:], teacher.shape[2:]))
    return _pool(student, size), _pool(teacher, size)


def as_compared(student_shape: tuple[int, ...], teacher: torch.Tensor) -> torch.Tensor:
    """The teacher's map as `align` brings it to a student map of per-sample shape `student_shape`. Aligning the
    student with it again changes nothing on the teacher side, so a cache can store this smaller map instead."""
    return align(torch.zeros(1, *student_shape, device=teacher.device), teacher)[1]

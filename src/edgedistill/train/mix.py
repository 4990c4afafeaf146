"""Mixup and CutMix, once per batch, on the input both the student and the teacher see (Beyer et al., CVPR 2022,
"Knowledge distillation: A good teacher is patient and consistent": the teacher's targets are its outputs on the
very input the student gets, and the schedule is long).

mixup (Zhang et al., ICLR 2018): x' = lam * x + (1 - lam) * x[perm], lam ~ Beta(alpha, alpha).
CutMix (Yun et al., ICCV 2019): a box of x[perm] (a span for sequences) pasted into x, covering a share 1 - lam of
it, lam then recomputed from the box as clipped. The labels mix with the same lam and permutation into label mass
per class (distill/targets.py): an unlabelled row brings none, so a mix of it teaches the hard-label term only the
labelled share. Every draw comes from the trainer's generator, so a resumed run mixes as an unbroken one would.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

KINDS = ("none", "mixup", "cutmix")


@dataclass
class Mix:
    """One batch's mixing: the permutation, the share of each row that stays its own, and CutMix's box."""

    perm: torch.Tensor
    lam: float
    box: tuple[slice, ...] | None = None  # CutMix: the region taken from x[perm], over the trailing axes

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        perm = self.perm.to(x.device)
        if self.box is None:
            return self.lam * x + (1 - self.lam) * x[perm]
        out = x.clone()
        region = (slice(None), slice(None)) + self.box
        out[region] = x[perm][region]
        return out

    def targets(self, y: torch.Tensor, num_classes: int) -> torch.Tensor:
        """(B, classes) label mass: the rows' labels mixed like their inputs; -1 (unlabelled) brings none."""
        mass = F.one_hot(y.clamp_min(0), num_classes).float() * (y >= 0).float()[:, None]
        perm = self.perm.to(y.device)
        return self.lam * mass + (1 - self.lam) * mass[perm]


class Mixer:
    """Draws a Mix for each batch from the trainer's generator."""

    def __init__(self, kind: str, alpha: float):
        if kind not in KINDS[1:]:
            raise ValueError(f"mix kind must be one of {KINDS[1:]}, got {kind!r}")
        self.kind, self.alpha = kind, alpha
        from scipy import stats  # here, not at the top: scipy.stats is about 1 s of every CLI start

        self.beta = stats.beta(alpha, alpha)

    def draw(self, shape: tuple[int, ...], gen: torch.Generator) -> Mix:
        n = shape[0]
        lam = float(self.beta.ppf(torch.rand((), generator=gen).item()))
        perm = torch.randperm(n, generator=gen)
        if self.kind == "mixup":
            return Mix(perm, lam)
        box, kept = cut_box(shape[2:], lam, gen)
        return Mix(perm, kept, box)


def cut_box(size: tuple[int, ...], lam: float, gen: torch.Generator) -> tuple[tuple[slice, ...], float]:
    """A box covering about 1 - lam of the trailing axes (each side sqrt(1 - lam) of an image's, 1 - lam of a
    sequence's), centred uniformly and clipped to the input; returns it and the share of the input left as it was."""
    side = (1 - lam) ** (1 / len(size))
    box, cut = [], 1.0
    for length in size:
        half = int(round(length * side)) // 2
        centre = int(torch.randint(0, length, (), generator=gen))
        lo, hi = max(centre - half, 0), min(centre + half, length)
        box.append(slice(lo, hi))
        cut *= (hi - lo) / length
    return tuple(box), 1.0 - cut

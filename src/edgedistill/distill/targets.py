"""What a method's `targets` may hold, and the two ways every method reads them.

`targets` is either
- (B,) class indices, with -1 for a row that has no label (a row of the unlabelled pool, data/unlabeled.py), or
- (B, C) label mass per class, for mixed inputs (mixup, CutMix: train/mix.py): a labelled row's mass sums to 1,
  an unlabelled row's to 0, and a mix of the two to the labelled share of the mix.
The hard-label term learns from the label mass alone, so an unlabelled row teaches only through the teacher. A term
about "the target class" (DKD, NKD) takes the label where there is one and the teacher's prediction where not.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def labeled_ce(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy averaged over the label mass of the batch: plain CE on a fully labelled batch, CE over the
    labelled rows alone when some have none, and mixup's lam * CE(a) + (1 - lam) * CE(b) on mixed labels.
    A batch without any label gives a zero that keeps the graph."""
    if targets.dim() == 1:
        labeled = targets >= 0
        if bool(labeled.all()):
            return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        if not bool(labeled.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[labeled], targets[labeled], label_smoothing=label_smoothing)
    mass = targets.sum(1)
    total = mass.sum()
    if not bool(total > 0):
        return logits.sum() * 0.0
    smoothed = targets * (1 - label_smoothing) + label_smoothing / targets.shape[1] * mass[:, None]
    return -(smoothed * F.log_softmax(logits, dim=1)).sum() / total


def target_classes(targets: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """(B,) the class a target-class term is about: the label; the largest label mass of a mixed row (as NKD's
    official code takes it from mixup's soft labels), with the teacher's probabilities filling the share of the
    row that has no label; the teacher's own prediction for an unlabelled row."""
    if targets.dim() == 1:
        return torch.where(targets >= 0, targets, teacher_logits.argmax(1))
    unlabeled_share = (1 - targets.sum(1, keepdim=True)).clamp_min(0)
    return (targets + unlabeled_share * F.softmax(teacher_logits.float(), dim=1)).argmax(1)


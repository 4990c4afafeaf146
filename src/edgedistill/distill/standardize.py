"""Logit standardization (Sun et al., CVPR 2024): z-score each sample's logits before the temperature, so the
student matches the teacher's logit relations rather than their range, which a smaller model may not reach.
"""
from __future__ import annotations

import torch

EPS = 1e-7


def zscore(logits: torch.Tensor) -> torch.Tensor:
    """(z - mean(z)) / (std(z) + 1e-7) per row; std is torch's unbiased one (over K-1), as the authors' code has it
    (the paper writes 1/K: the two differ by a constant factor, i.e. a slightly different temperature)."""
    return (logits - logits.mean(dim=1, keepdim=True)) / (logits.std(dim=1, keepdim=True) + EPS)


def standardized(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 on: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Both logits z-scored when `on` (distill.logit_standardization), else as they are."""
    return (zscore(student_logits), zscore(teacher_logits)) if on else (student_logits, teacher_logits)


def standardized_words(distill: dict) -> str:
    """'+LS' after a method's name in a report when its logits are standardised."""
    return "+LS" if distill.get("logit_standardization") else ""

"""Distillation methods (one class per file) and the trainer that runs teacher, scratch and KD students alike.

A method is called with the student's logits, the teacher's logits (None when training without a teacher)
and the targets, and returns a dict of named, already weighted loss terms; the trainer sums them.
"""
from __future__ import annotations

from edgedistill.config import DistillConfig
from edgedistill.distill.ce import CrossEntropy
from edgedistill.distill.dkd import DKD
from edgedistill.distill.kd import HintonKD


def build_method(cfg: DistillConfig, label_smoothing: float = 0.0) -> HintonKD | DKD:
    """The configured method with its own weights; adding a method is one file and one line here."""
    if cfg.method == "dkd":
        return DKD(cfg.temperature, cfg.dkd.alpha, cfg.dkd.beta, cfg.dkd.ce_weight, label_smoothing)
    return HintonKD(cfg.temperature, cfg.alpha, label_smoothing)


__all__ = ["CrossEntropy", "DKD", "HintonKD", "build_method"]

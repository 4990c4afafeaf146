"""Distillation methods (one class per file) and the trainer that runs teacher, scratch and KD students alike.

Every method meets distill.method.Method: called with the student's logits, the teacher's logits (None without a
teacher) and the targets, it returns named, already weighted loss terms that the trainer sums. Feature methods
(FitNets, attention transfer) are added on top through FeatureDistillation, which also receives tap features.
"""
from __future__ import annotations

from edgedistill.config import DistillConfig
from edgedistill.distill.at import AttentionTransfer
from edgedistill.distill.ce import CrossEntropy
from edgedistill.distill.dkd import DKD
from edgedistill.distill.features import FeatureDistillation
from edgedistill.distill.fitnets import FitNets
from edgedistill.distill.kd import HintonKD
from edgedistill.distill.method import Method


def build_method(cfg: DistillConfig, label_smoothing: float = 0.0) -> Method:
    """The configured method(s) with their own weights; adding a method is one file and a line here."""
    methods = cfg.methods
    if "dkd" in methods:
        logit = DKD(cfg.temperature, cfg.dkd.alpha, cfg.dkd.beta, cfg.dkd.ce_weight, label_smoothing)
    elif "kd" in methods:
        logit = HintonKD(cfg.temperature, cfg.alpha, label_smoothing)
    else:
        logit = CrossEntropy(label_smoothing)
    features = ([FitNets(cfg.fitnets.weight)] if "fitnets" in methods else []) + \
               ([AttentionTransfer(cfg.at.weight, cfg.at.p)] if "at" in methods else [])
    if not features:
        return logit
    return FeatureDistillation(logit, features, cfg.student_taps, cfg.teacher_taps)


__all__ = ["AttentionTransfer", "CrossEntropy", "DKD", "FeatureDistillation", "FitNets", "HintonKD",
           "Method", "build_method"]

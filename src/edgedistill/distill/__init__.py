"""Distillation methods (one class per file) and the trainer that runs teacher, scratch and KD students alike.

Every method meets distill.method.Method: called with the student's logits, the teacher's logits (None without a
teacher) and the targets, it returns named, already weighted loss terms that the trainer sums. Feature methods
(FitNets, attention transfer, ReviewKD) and relation methods (CRD) are added on top through FeatureDistillation,
which also receives tap features.
"""
from __future__ import annotations

from edgedistill.config import DistillConfig
from edgedistill.distill.at import AttentionTransfer
from edgedistill.distill.ce import CrossEntropy
from edgedistill.distill.crd import CRD
from edgedistill.distill.dist import DIST
from edgedistill.distill.dkd import DKD
from edgedistill.distill.features import FeatureDistillation
from edgedistill.distill.fitnets import FitNets
from edgedistill.distill.kd import HintonKD
from edgedistill.distill.method import Method
from edgedistill.distill.mvkd import MultiViewKD
from edgedistill.distill.nkd import NKD
from edgedistill.distill.reviewkd import ReviewKD
from edgedistill.methods import METHODS, build_one, of_kind


def build_method(cfg: DistillConfig, label_smoothing: float = 0.0) -> Method:
    """The configured method(s) with their own weights, from distill/registry.py: the one logit method (plain CE
    when none is named), plus the feature and relation methods on top."""
    logit = next((build_one(m, cfg, label_smoothing) for m in cfg.methods if METHODS[m].kind == "logit"),
                 None) or CrossEntropy(label_smoothing)
    features = [build_one(m, cfg, label_smoothing) for m in of_kind("feature") + of_kind("relation")
                if m in cfg.methods]
    if not features:
        return logit
    return FeatureDistillation(logit, features, cfg.student_taps, cfg.teacher_taps)


__all__ = ["AttentionTransfer", "CRD", "CrossEntropy", "DIST", "DKD", "FeatureDistillation", "FitNets", "HintonKD",
           "Method", "MultiViewKD", "NKD", "ReviewKD", "build_method"]

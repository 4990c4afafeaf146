"""The one place a distillation recipe becomes a loss: the configured methods built from their registry entries,
then set up on the student and teacher they will train, before the teacher cache or the trainer reads them."""
from __future__ import annotations

import torch
import torch.nn as nn

from edgedistill.config.distill import DistillConfig
from edgedistill.distill import METHODS, of_kind
from edgedistill.distill.ce import CrossEntropy
from edgedistill.distill.features import FeatureDistillation
from edgedistill.distill.method import Method


def build_one(name: str, cfg: DistillConfig, label_smoothing: float):
    return METHODS[name].build(cfg.settings(name), cfg, label_smoothing)


def build_method(cfg: DistillConfig, label_smoothing: float = 0.0) -> Method:
    """The configured method(s) with their own weights: the one logit method (plain CE when none is named), plus
    the feature and relation methods on top."""
    logit = next((build_one(m, cfg, label_smoothing) for m in cfg.methods if METHODS[m].kind == "logit"),
                 None) or CrossEntropy(label_smoothing)
    features = [build_one(m, cfg, label_smoothing) for m in of_kind("feature") + of_kind("relation")
                if m in cfg.methods]
    if not features:
        return logit
    return FeatureDistillation(logit, features, cfg.student_taps, cfg.teacher_taps)


def set_up_method(cfg: DistillConfig, label_smoothing: float, student: nn.Module, teacher: nn.Module,
                  sample: torch.Tensor, num_train: int) -> Method:
    """The configured method, set up on this student and teacher: taps resolved, its own weights (adapters, CRD's
    banks) built from one sample's real features, a bank keyed by row sized by `num_train`. Those weights draw from
    the global RNG in a fork, so whatever trains next starts from the same random stream whatever the method."""
    method = build_method(cfg, label_smoothing)
    with torch.random.fork_rng(devices=[]):
        return method.setup(student, teacher, sample, num_train=num_train)

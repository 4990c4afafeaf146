"""Distillation methods (one class per file, each registered in distill/registry.py) and the trainer that runs
teacher, scratch and KD students alike.

Every method meets distill.method.Method: called with the student's logits, the teacher's logits (None without a
teacher) and the targets, it returns named, already weighted loss terms that the trainer sums. Feature methods
(FitNets, attention transfer, ReviewKD) and relation methods (CRD) are added on top through FeatureDistillation,
which also receives tap features. distill/build.py builds the configured methods and sets them up on a student and
teacher.
"""
from __future__ import annotations

from edgedistill.distill.at import AttentionTransfer
from edgedistill.distill.build import build_method, set_up_method
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

__all__ = ["AttentionTransfer", "CRD", "CrossEntropy", "DIST", "DKD", "FeatureDistillation", "FitNets", "HintonKD",
           "Method", "MultiViewKD", "NKD", "ReviewKD", "build_method", "set_up_method"]

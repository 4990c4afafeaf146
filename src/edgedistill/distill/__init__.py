"""Distillation methods (one class per file) and the trainer that runs teacher, scratch and KD students alike.

A method is called with the student's logits, the teacher's logits (None when training without a teacher)
and the targets, and returns a dict of named, already weighted loss terms; the trainer sums them.
"""
from __future__ import annotations

from edgedistill.distill.ce import CrossEntropy
from edgedistill.distill.kd import HintonKD

METHODS = {"kd": HintonKD}


def build_method(name: str, **kwargs) -> HintonKD:
    return METHODS[name](**kwargs)


__all__ = ["CrossEntropy", "HintonKD", "METHODS", "build_method"]

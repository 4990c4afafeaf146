"""Teachers from anywhere: an ONNX file scored through ONNX Runtime (the bridge from Keras, scikit-learn via
skl2onnx, and other frameworks) and an ensemble of teachers, each an nn.Module whose forward returns logits.

They are never trained: forward runs under torch.no_grad, and their state_dict holds only buffers (a digest of each
ONNX file, the combination weights, the weights of loaded torch members), so the teacher-output cache's key changes
when a file's bytes change. They give logits only, so a method that reads teacher features is refused up front
(config/teacher.py, when the config is validated).

    teacher: {model: onnx, args: {path: gbt.onnx}}                   # output: logits | probabilities (detected)
    teacher: {model: ensemble, args: {members: [{model: resnet, checkpoint: a.pt}, {model: onnx, args: {path: b.onnx}}],
                                      weights: val_accuracy, combine: probabilities}}
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from edgedistill.config import ModelConfig
    from edgedistill.data import DataSplits

from edgedistill.config.teacher import EXTERNAL


def is_external(model: str) -> bool:
    return model in EXTERNAL


def build_external_teacher(mcfg: "ModelConfig", data: "DataSplits", seed: int,
                           accel: "torch.device | None" = None) -> "nn.Module":
    """The configured ONNX or ensemble teacher, checked against the data (one logit per class, finite outputs)."""
    if mcfg.model == "onnx":
        from edgedistill.teachers.onnx import OnnxTeacher

        return OnnxTeacher.from_args(mcfg.args, data, "teacher.args")
    from edgedistill.teachers.ensemble import EnsembleTeacher

    return EnsembleTeacher.from_args(mcfg.args, data, seed, accel)


__all__ = ["EXTERNAL", "build_external_teacher", "is_external"]

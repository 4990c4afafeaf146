"""A logit method (KD, DKD or plain CE) plus feature methods (FitNets, attention transfer) on paired taps.

The trainer sees one loss function. Its owner calls `setup` once (taps are resolved, FitNets adapters are built
from real shapes); the cache then stores `teacher_taps`, and the trainer records `student_taps`, trains `trainable`
with the student and passes the recorded features.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from edgedistill.distill.method import FeatureMethod, Method
from edgedistill.distill.taps import TapRecorder, pair_taps, resolve_taps
from edgedistill.roles import Side


class FeatureDistillation(Method):
    def __init__(self, logit_method: Method, feature_methods: list[FeatureMethod],
                 student_taps: list[str] | None = None, teacher_taps: list[str] | None = None):
        self.logit_method = logit_method
        self.feature_methods = feature_methods
        self.wants = frozenset(logit_method.wants).union(*(m.wants for m in feature_methods))
        self.requested = (student_taps, teacher_taps)
        self.student_taps: list[str] = []
        self.teacher_taps: list[str] = []
        self.tap_shapes: list[tuple[int, ...]] = []  # per student tap, one sample's (C, *spatial)
        self.trainable = nn.ModuleList()
        self.ready = False

    @torch.no_grad()
    def setup(self, student: nn.Module, teacher: nn.Module, sample: torch.Tensor,
              num_train: int | None = None) -> "FeatureDistillation":
        """Resolve and pair the taps, and build FitNets adapters from one forward pass of each model."""
        if self.ready:
            raise RuntimeError("FeatureDistillation.setup was called twice; its adapters would be built anew")
        pairs = pair_taps(resolve_taps(student, self.requested[0], Side.STUDENT),
                          resolve_taps(teacher, self.requested[1], Side.TEACHER))
        self.student_taps, self.teacher_taps = [s for s, _ in pairs], [t for _, t in pairs]
        s_feats, t_feats = self.record(student, self.student_taps, sample), self.record(teacher, self.teacher_taps,
                                                                                          sample)
        self.tap_shapes = [tuple(f.shape[1:]) for f in s_feats]
        for m in self.feature_methods:
            m.num_train, m.taps = num_train, self.student_taps
            own = m.build(s_feats, t_feats)
            if own is not None:
                self.trainable.append(own)
        self.trainable.to(sample.device)
        self.ready = True
        return self

    @staticmethod
    def record(model: nn.Module, taps: list[str], x: torch.Tensor) -> list[torch.Tensor]:
        rec = TapRecorder(model, taps)
        was_training = model.training
        model.eval()
        model(x.clone())  # its own copy: the other model reads the same sample
        model.train(was_training)
        rec.remove()
        return rec.take()

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.logit_method.start_epoch(epoch, epochs)
        for m in self.feature_methods:
            m.start_epoch(epoch, epochs)

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, targets: torch.Tensor,
                 student_feats: list[torch.Tensor] | None = None,
                 teacher_feats: list[torch.Tensor] | None = None, **extras: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.ready:
            raise RuntimeError("FeatureDistillation.setup must run before training: it resolves the taps")
        if not student_feats or teacher_feats is None or len(teacher_feats) != len(student_feats):
            raise ValueError("feature distillation needs the student's and the teacher's tap features, one per pair")
        pick = lambda m: {k: v for k, v in extras.items() if k in m.wants}  # noqa: E731
        terms = self.logit_method(student_logits, teacher_logits, targets, **pick(self.logit_method))
        for m in self.feature_methods:
            terms |= m(student_feats, teacher_feats, **pick(m))
        return terms

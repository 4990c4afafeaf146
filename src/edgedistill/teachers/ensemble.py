"""An ensemble teacher: several loaded teachers (torch models with their checkpoints, ONNX files) combined into one.

combine: probabilities (default) averages the members' softmax probabilities, weighted, and the teacher's logits are
the log of that mean (clamped at 1e-7, as for an ONNX teacher's probabilities); logits averages the logits.
weights: uniform, or val_accuracy: each member's accuracy on the validation split (never the test split), normalised
to sum to 1. Every member's validation accuracy is recorded in metrics.json either way.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgedistill.checkpoint import load_weights, read_checkpoint, save_checkpoint
from edgedistill.config import ModelConfig
from edgedistill.config.teacher import EnsembleArgs, TeacherMember
from edgedistill.data import DataSplits
from edgedistill.errors import UserError
from edgedistill.models import count_params
from edgedistill.models.build import build_model
from edgedistill.models.evaluate import model_input, predict_logits
from edgedistill.teachers.base import ExternalTeacher
from edgedistill.teachers.onnx import EPS, OnnxTeacher


def load_member(member: TeacherMember, field: str, data: DataSplits, seed: int) -> nn.Module:
    """A torch member: built like any teacher, its checkpoint loaded, its logits checked finite."""
    model = build_model(ModelConfig(model=member.model, args=member.args), field, data, seed)
    load_weights(model, read_checkpoint(member.checkpoint, f"{field}.checkpoint"), member.checkpoint,
                 f"{field}.checkpoint")
    with torch.no_grad():
        logits = model.eval()(model_input(data.x_train[:64]))
    if not torch.isfinite(logits).all():
        raise UserError(f"{field}.checkpoint: {member.checkpoint} gives NaN or inf logits on training samples; it "
                        "cannot teach")
    return model.requires_grad_(False)


def val_accuracy(model: nn.Module, data: DataSplits, accel: torch.device) -> float:
    pred = predict_logits(model.to(accel), data.x_val, accel).argmax(1).numpy()
    model.cpu()
    return float(np.mean(pred == data.y_val))


def shared_data_names(members: list[OnnxTeacher]) -> None:
    """Members' external data files are kept in the run folder under the names their models use, so two members
    may not use one name for different files."""
    seen: dict[str, Path] = {}
    for m in members:
        for name, f in zip(m.data_names(), m.external):
            if seen.setdefault(name, f.resolve()) != f.resolve():
                raise UserError(f"{m.field}.path: its external data file {name!r} has the name another member's "
                                f"({seen[name]}) has; save one of them with another location")


class EnsembleTeacher(ExternalTeacher):
    """The weighted combination of its members; the weights and the combination are buffers (the cache's key)."""

    not_exported = ("an ensemble teacher is not one torch module torch.export can trace, so it is not re-exported; "
                    "its members' files are kept in the run folder")

    def __init__(self, members: list[nn.Module], specs: list[TeacherMember], weights: list[float],
                 accuracies: list[float], weighting: str, combine: str, meta: dict):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.specs, self.accuracies, self.weighting, self.combine, self.meta = specs, accuracies, weighting, combine, meta
        self.register_buffer("member_weights", torch.tensor(weights, dtype=torch.float64))
        self.register_buffer("combine_logits", torch.tensor(combine == "logits"))

    @classmethod
    def from_args(cls, args: dict, data: DataSplits, seed: int, accel: torch.device | None = None) -> "EnsembleTeacher":
        spec = EnsembleArgs.model_validate(args)  # checked when the config was validated
        members: list[nn.Module] = []
        for i, m in enumerate(spec.members):
            field = f"teacher.args.members.{i}"
            members.append(OnnxTeacher.from_args(m.args, data, f"{field}.args") if m.model == "onnx"
                           else load_member(m, field, data, seed))
        shared_data_names([m for m in members if isinstance(m, OnnxTeacher)])
        accuracies = [val_accuracy(m, data, accel or torch.device("cpu")) for m in members]
        total = sum(accuracies)
        weights = ([a / total for a in accuracies] if spec.weights == "val_accuracy" and total > 0
                   else [1.0 / len(members)] * len(members))
        meta = {"input_shape": list(data.input_shape), "num_classes": data.num_classes,
                "class_names": data.class_names}
        return cls(members, spec.members, weights, accuracies, spec.weights, spec.combine, meta).eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.member_weights.to(x.device, torch.float32)
        outs = [m(x).float() for m in self.members]
        if self.combine == "logits":
            return sum(wi * o for wi, o in zip(w, outs))
        p = sum(wi * torch.softmax(o, dim=1) for wi, o in zip(w, outs))
        return torch.log(p.clamp_min(EPS))

    def footprint(self) -> dict:
        parts = [m.footprint() if isinstance(m, OnnxTeacher) else
                 {"params": count_params(m), "size_fp32_bytes": 4 * sum(t.numel() for t in m.state_dict().values()
                                                                        if t.is_floating_point())}
                 for m in self.members]
        return {k: sum(p[k] for p in parts) for k in ("params", "size_fp32_bytes")}

    def files(self) -> list[str]:
        return [f"teacher_member{i}.onnx" if isinstance(m, OnnxTeacher) else f"teacher_member{i}.pt"
                for i, m in enumerate(self.members)]

    def keep(self, run_dir: Path) -> list[str]:
        """Each member's file in the run folder: an ONNX file copied, a torch member's weights as a checkpoint."""
        for name, m, spec in zip(self.files(), self.members, self.specs):
            if isinstance(m, OnnxTeacher):
                m.keep(run_dir, name)
            elif Path(spec.checkpoint).resolve() != (run_dir / name).resolve():  # not the file it was read from
                save_checkpoint(run_dir / name, m, {"role": "teacher_member", "model": spec.model,
                                                    "args": spec.args, **self.meta})
        return self.files()

    def run_record(self) -> dict:
        members = [{"model": s.model, "args": s.args, "file": f, "val_accuracy": a, "weight": float(w),
                    **({"onnx": m.describe()} if isinstance(m, OnnxTeacher) else {"checkpoint": s.checkpoint})}
                   for s, f, a, w, m in zip(self.specs, self.files(), self.accuracies,
                                            self.member_weights.tolist(), self.members)]
        return {**self.footprint(), "checkpoint": None, "files": self.files(), "source": "ensemble",
                "ensemble": {"weights": self.weighting, "combine": self.combine, "members": members}}

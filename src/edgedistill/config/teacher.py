"""The config of an ONNX or ensemble teacher, and what such a teacher refuses, checked when the config is validated:
before any data is loaded or any folder created. Each problem is one line naming the key."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from edgedistill.distill import METHODS
from edgedistill.errors import UserError
from edgedistill.roles import Role, Side
from edgedistill.strict import Strict, format_validation_error

GIVES = frozenset({"logits", "views"})  # what an ONNX or ensemble teacher gives a method: logits, on any view


EXTERNAL = ("onnx", "ensemble")  # teacher.model values that name no torch factory: loaded, never trained

class OnnxArgs(Strict):
    """teacher.args of `model: onnx` (and of an onnx member of an ensemble)."""

    path: str = Field(..., description="the .onnx file; a skl2onnx classifier must be converted with "
                                       "options={id(clf): {'zipmap': False}}. It reads the inputs as the pipeline "
                                       "gives them: tables and signals standardised on the training split, so "
                                       "fit the model on edgedistill.pipeline.load_data's arrays")
    output: Literal["detect", "logits", "probabilities"] = Field(
        "detect", description="what the output holds; detect: probabilities when every row of the first batch is "
                              "non-negative and sums to 1 within 1e-3. Probabilities become log(max(p, 1e-7))")
    output_name: str | None = Field(None, description="the output to read (default: the first float tensor of "
                                                      "shape (N, classes), e.g. skl2onnx's 'probabilities')")


class TeacherMember(Strict):
    """One member of an ensemble: a zoo model or import path with its checkpoint, or an ONNX file."""

    model: str = Field(..., description="registered model name, import path 'pkg.module:factory', or 'onnx'")
    args: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = Field(None, description="the member's weights (required: an ensemble trains nothing)")


class EnsembleArgs(Strict):
    """teacher.args of `model: ensemble`."""

    members: list[TeacherMember] = Field(..., min_length=1)
    weights: Literal["uniform", "val_accuracy"] = Field(
        "uniform", description="val_accuracy: each member weighted by its accuracy on the validation split")
    combine: Literal["probabilities", "logits"] = Field(
        "probabilities", description="average probabilities (teacher logits: log of the weighted mean) or logits")


def validate_at(model: type[BaseModel], value: Any, loc: tuple, source: str) -> BaseModel:
    """model.model_validate(value), its first problem reported under `loc` (an unknown key before a missing one)."""
    try:
        return model.model_validate(value)
    except ValidationError as err:
        errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
        moved = [{"type": e["type"], "loc": loc + tuple(e["loc"]), "input": e["input"],
                  **({"ctx": e["ctx"]} if "ctx" in e else {})} for e in errors]
        raise UserError(format_validation_error(ValidationError.from_exception_data(err.title, moved),
                                                source)) from None


def check_members(args: EnsembleArgs, source: str) -> None:
    for i, member in enumerate(args.members):
        where = f"{source}: teacher.args.members.{i}"
        if member.model == "ensemble":
            raise UserError(f"{where}.model: an ensemble cannot hold an ensemble; list its members here instead")
        if member.model == "onnx":
            if member.checkpoint is not None:
                raise UserError(f"{where}.checkpoint: an onnx member is read from its args.path; remove checkpoint")
            validate_at(OnnxArgs, member.args, (Side.TEACHER.value, "args", "members", i, "args"), source)
        elif member.checkpoint is None:
            raise UserError(f"{where}.checkpoint: required for a {member.model!r} member; an ensemble trains "
                            "nothing, so each torch member is loaded from its weights")


def check_teacher_spec(cfg: Any, source: str) -> None:
    """An ONNX or ensemble teacher's args, and the settings it cannot serve: training it, feature methods, pruning
    and re-exporting it. `cfg` is a validated ExperimentConfig (not imported: config.py calls this check)."""
    if cfg.student.model in EXTERNAL:
        raise UserError(f"{source}: student.model: {cfg.student.model!r} is a teacher only; the student is what "
                        "this run trains")
    kind = cfg.teacher.model
    if kind not in EXTERNAL:
        return
    if kind == "onnx":
        validate_at(OnnxArgs, cfg.teacher.args, (Side.TEACHER.value, "args"), source)
    else:
        check_members(validate_at(EnsembleArgs, cfg.teacher.args, (Side.TEACHER.value, "args"), source), source)
    what = f"an {kind} teacher"
    if cfg.teacher.checkpoint is not None:
        where = "teacher.args.path" if kind == "onnx" else "each member's checkpoint"
        raise UserError(f"{source}: teacher.checkpoint: {what} is read from {where}; remove teacher.checkpoint")
    if cfg.teacher.train != type(cfg.teacher.train)():
        raise UserError(f"{source}: teacher.train: {what} is loaded, never trained (it has no trainable weights); "
                        "remove teacher.train")
    for name in cfg.distill.methods:
        lacking = METHODS[name].needs - GIVES
        if lacking:
            raise UserError(f"{source}: distill.method: {name} reads the teacher's {', '.join(sorted(lacking))}, "
                            f"which {what} cannot give (it is not a torch module with taps); use a logit method "
                            "such as kd or dkd")
    if cfg.compress.prune.enabled:
        raise UserError(f"{source}: compress.prune.enabled: {what} has no torch channels to prune; set it to false")
    if cfg.deploy.enabled and cfg.deploy.roles is not None and Role.TEACHER in cfg.deploy.roles:
        raise UserError(f"{source}: deploy.roles: {what} is not a torch module torch.export can trace, so it is "
                        "not re-exported (its own files are kept in the run folder); remove 'teacher'")

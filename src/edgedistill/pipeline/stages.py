"""The run as named stages over one Run, and the small runner that owns rank-0 gating and progress.

Each stage takes the Run and returns it with more filled in. Resume needs no bookkeeping here: a stage that trains
resumes through its models' state files, and the student search reloads its saved result.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch.nn as nn
from pydantic import ValidationError

from edgedistill import distributed
from edgedistill.atomic import atomic_write_text, read_json_object
from edgedistill.config import ExperimentConfig
from edgedistill.data import DataSplits
from edgedistill.deploy.text_frontend import save_text_frontend
from edgedistill.distill import METHODS
from edgedistill.distill.taps import resolve_taps
from edgedistill.errors import UserError
from edgedistill.models.build import build_model
from edgedistill.models.evaluate import model_input
from edgedistill.pipeline.deployment import deploy_one, early_fit_warning, int8_loss_points
from edgedistill.pipeline.record import build_metrics, finish, model_record
from edgedistill.pipeline.state import Run
from edgedistill.results import Deploy, Pruning, StudentSearch
from edgedistill.strict import error_location
from edgedistill.pipeline.training import (obtain_teacher, prune_teacher, quantization_aware_finetune,
                                           train_students)
from edgedistill.progress import emit, track
from edgedistill.roles import Role, Side
from edgedistill.teachers import is_external
from edgedistill.teachers.base import ExternalTeacher
from edgedistill.train.method_setup import set_up_method


def find_student(run: Run) -> Run:
    """student: auto's search and the chosen student's checks, which a run makes before its folder is made or an old
    run in it replaced: a search that finds no student, or a chosen one that cannot run, is bad input."""
    from edgedistill.pipeline.search import search_student

    if distributed.world_size() > 1:
        raise UserError("student: auto runs in one process; search first without torchrun, then set student.model "
                        "and student.args to the chosen student")
    run.search = search_student(run.cfg, run.data, run.plan, run.accel, build_model)
    return adopt_student(run)


def adopt_student(run: Run) -> Run:
    """The searched student as the run's, checked as a configured one is before training: its fit and formats, and a
    feature method's taps on it."""
    student = run.cfg.student.model_copy(update={"model": run.search["family"], "args": run.search["args"]})
    run.cfg = run.cfg.model_copy(update={Side.STUDENT.value: student})
    run.early_fit = check_student(run)
    check_method_setup(run.cfg, run.data, run.loaded_teacher)
    return run


def read_search(saved: Path, run_dir: Path) -> dict:
    """The student a killed run's search chose; a damaged file is refused, since searching again could choose
    another student than the one whose training state the run holds."""
    try:
        return StudentSearch.model_validate(read_json_object(saved)).to_json()
    except ValidationError as err:
        where = error_location(err.errors()[0])
        raise UserError(f"--resume {run_dir}: {saved} is unreadable or damaged (at {where}), so the student the "
                        "search chose is unknown; start a new run") from None


def search(run: Run) -> Run:
    """student: auto. The result is kept in the run folder, so --resume does not search again."""
    saved = run.run_dir / "student_search.json"
    if run.search is None:  # a resumed run: the search was made, and kept, before it was killed, or it runs now
        if saved.exists():
            run.search = read_search(saved, run.run_dir)
            adopt_student(run)
        else:
            find_student(run)
    if not saved.exists():
        atomic_write_text(saved, json.dumps(run.search, indent=2))
    return run


def check_student(run: Run) -> dict | None:
    """Build the student, so a mismatch or a device overflow is reported before any training."""
    cfg = run.cfg
    probe = build_model(cfg.student, Side.STUDENT, run.data, cfg.seed + 1)
    return early_fit_warning(cfg, probe, run.data, run.plan) if cfg.deploy.enabled and distributed.is_main() \
        else None


def check_method_setup(cfg: ExperimentConfig, data: DataSplits, teacher: nn.Module) -> None:
    """A feature method set up on the untrained teacher and student now (taps, adapters), so a wrong tap name or
    shape fails before the teacher trains and before --overwrite replaces an old run. Before `student: auto` has
    searched, only the teacher's taps are checked; adopt_student checks the chosen student's."""
    if not any("features" in METHODS[m].needs for m in cfg.distill.methods) or is_external(cfg.teacher.model):
        return  # an ONNX or ensemble teacher has no taps: the methods' own refusal says so
    if cfg.student.model == "auto":
        resolve_taps(teacher, cfg.distill.teacher_taps, Side.TEACHER)
        return
    student = build_model(cfg.student, Side.STUDENT, data, cfg.seed + 1)
    sample = model_input(data.x_train[:2])
    set_up_method(cfg.distill, cfg.student.train.label_smoothing, student, copy.deepcopy(teacher), sample,
                  len(data.x_train) + data.n_pool)


def teacher(run: Run) -> Run:
    run.trained[Role.TEACHER] = obtain_teacher(run)
    return run


def prune(run: Run) -> Run:
    run.trained[Role.TEACHER_PRUNED], run.prune_info = prune_teacher(run)
    return run


def students(run: Run) -> Run:
    run.trained |= train_students(run)
    return run


def evaluate(run: Run) -> Run:
    for role, trained in run.trained.items():
        run.records[role], run.test_logits[role] = model_record(role, trained, run.data, run.accel)
    run.records[Role.STUDENT_KD].distill = run.cfg.distill.model_dump()
    if run.prune_info is not None:
        pruned = run.records[Role.TEACHER_PRUNED]
        pruned.pruning, pruned.distill = Pruning(**run.prune_info), run.cfg.distill.model_dump()
    return run


def deploy(run: Run) -> Run:
    """Export every model (or those in deploy.roles) to the device's formats (rank 0 alone: it writes files; the
    runner then sends the records to every rank)."""
    chosen = run.cfg.deploy.roles
    roles = [r for r in run.trained if chosen is None or r in chosen]
    for role in [r for r in roles if isinstance(run.trained[r].model, ExternalTeacher)]:
        run.records[role].deploy_skipped = run.trained[role].model.not_exported
        roles.remove(role)
    for role in track(roles, desc="export, quantize, profile", unit="model", enabled=run.progress):
        run.records[role].deploy = Deploy(**deploy_one(run, role, run.trained[role].model, run.test_logits[role]))
    return run


def qat(run: Run) -> Run:
    """Fine-tune the KD student with int8 simulated when int8 PTQ costs it too much on validation (or always)."""
    dc = run.cfg.deploy
    if dc.roles is not None and Role.STUDENT_KD not in dc.roles:
        return run
    deployed = run.records[Role.STUDENT_KD].deploy
    loss = int8_loss_points(deployed.model_dump(exclude_unset=True) if deployed is not None else {})
    if not (dc.qat == "always" or (dc.qat == "auto" and loss is not None and loss > dc.qat_threshold_points)):
        return run
    trained = run.trained[Role.STUDENT_KD_QAT] = quantization_aware_finetune(run)
    record, logits = model_record(Role.STUDENT_KD_QAT, trained, run.data, run.accel)
    if distributed.is_main():
        record.deploy = Deploy(**deploy_one(run, Role.STUDENT_KD_QAT, trained.model, logits))
    record.qat_reason = "deploy.qat: always" if dc.qat == "always" else f"int8 PTQ lost {loss:.2f} validation points"
    record.ptq_int8_val_loss_points = loss
    run.records[Role.STUDENT_KD_QAT] = record
    return run


def text_frontend(run: Run) -> Run:
    """The tokenizer beside the exports, so they classify raw strings."""
    save_text_frontend(run.run_dir / "export", run.data.text, run.data.class_names)
    return run


def report(run: Run) -> Run:
    run.metrics = build_metrics(run)
    finish(run)
    run.tracking.log_result(run.metrics, run.run_dir)
    return run


@dataclass(frozen=True)
class Stage:
    name: str
    apply: Callable[[Run], Run]
    when: Callable[[Run], bool] = lambda run: True
    main_only: bool = False  # rank 0 alone runs it (it writes files); every other stage runs on every process
    shares: tuple[str, ...] = ()  # the Run fields a main_only stage fills that every rank needs: rank 0 sends them


def deploying(run: Run) -> bool:
    return run.cfg.deploy.enabled


STAGES = (
    Stage("search", search, when=lambda run: run.cfg.student.model == "auto" or run.search is not None),
    Stage(Role.TEACHER.value, teacher),
    Stage("prune", prune, when=lambda run: run.cfg.compress.prune.enabled),
    Stage("students", students),
    Stage("evaluate", evaluate),
    Stage("deploy", deploy, when=deploying, main_only=True, shares=("records",)),
    Stage("qat", qat, when=deploying),
    Stage("text_frontend", text_frontend, when=lambda run: deploying(run) and bool(run.data.text),
          main_only=True),
    Stage("report", report),
)


def run_stages(run: Run, stages: tuple[Stage, ...] = STAGES) -> Run:
    """Each stage that applies, in order, on the processes it is for; a jsonl event marks each one's start (the
    report stage's own `finished` event is the last line)."""
    for stage in stages:
        if not stage.when(run):
            continue
        if not stage.main_only or distributed.is_main():
            emit("stage", name=stage.name)
            run = stage.apply(run)
        for name in stage.shares:
            setattr(run, name, distributed.broadcast(getattr(run, name)))
    return run


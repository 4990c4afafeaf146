"""Training a role of the run: the teacher, the pruned teacher, the scratch control and the KD student, and the QAT
fine-tune. Each builds its loss and batch source and hands them to one Trainer, so every model trains alike."""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from edgedistill import distributed
from edgedistill.checkpoint import save_checkpoint
from edgedistill.compress import prune_to_budget
from edgedistill.compress.qat import attach_fake_quant, detach_fake_quant
from edgedistill.config import ExperimentConfig, ModelConfig
from edgedistill.data import DataSplits
from edgedistill.distill.ce import CrossEntropy
from edgedistill.distill.method import Method
from edgedistill.errors import UserError
from edgedistill.models.build import build_model, tokenizer_args
from edgedistill.models.evaluate import model_input
from edgedistill.pipeline.state import Run, Trained
from edgedistill.progress import Callback
from edgedistill.progress import emit
from edgedistill.roles import Role, Side
from edgedistill.teachers import is_external
from edgedistill.train.cache import CacheSpec, TeacherCache, load_or_build
from edgedistill.train.method_setup import build_method, set_up_method
from edgedistill.train.mix import Mixer
from edgedistill.train.resume import Resume, TrainResult
from edgedistill.train.self_teaching import PseudoLabel, SelfTeaching
from edgedistill.train.trainer import EpochLog, Trainer, batch_source, check_train_config

STATE_DIR = "state"  # per-epoch training states for --resume; removed once the run has finished


def checkpoint_meta(mcfg: ModelConfig, data: DataSplits, role: Role) -> dict:
    """What rebuilds the model without the config: its arguments as filled in from the data (a text model's
    vocabulary and padding id included)."""
    return {"role": str(role), "model": mcfg.model, "args": tokenizer_args(mcfg, str(role), data),
            "input_shape": list(data.input_shape), "num_classes": data.num_classes, "class_names": data.class_names}


class SaveBest(Callback):
    """<role>.pt holds the best-on-validation weights, with what rebuilds the model. Rank 0 alone is told."""

    def __init__(self, run: Run, mcfg: ModelConfig, role: Role):
        self.path, self.meta = run.run_dir / f"{role}.pt", checkpoint_meta(mcfg, run.data, role)

    def on_best(self, model: nn.Module, row: dict) -> None:
        save_checkpoint(self.path, model, {**self.meta, "epoch": row["epoch"], "val_accuracy": row["val_accuracy"]})


def train_role(run: Run, role: Role, model: nn.Module, mcfg: ModelConfig, loss: Method,
               teacher: nn.Module | None = None, cache: TeacherCache | None = None,
               callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train one model of the run with its best checkpoint, epoch log and resumable state in the run folder. A
    model taught by the teacher also trains on the unlabelled pool, if there is one; a model trained on labels
    alone (the scratch control, a teacher without train.pseudo_label) cannot learn from it; a self-taught teacher
    (PseudoLabel) is its own source of pool targets. `callbacks` are told of each epoch after those (`edgedistill
    tune` reports to its pruner there)."""
    x, y = run.data.training_rows(with_pool=loss.uses_teacher)
    if isinstance(loss, PseudoLabel):
        source = SelfTeaching(model, run.cfg.data.augment, loss.cfg, torch.as_tensor(y) < 0, run.data.pixel_stats)
    else:
        source = batch_source(loss, run.cfg.data.augment, teacher, cache, run.data.pixel_stats)
    trainer = Trainer(mcfg.train, loss, source, run.accel, run.cfg.seed, str(role),
                      callbacks=[EpochLog(run.log_path(role)), SaveBest(run, mcfg, role),
                                 run.tracking.epochs(str(role)), *callbacks],
                      resume=Resume(run.run_dir / STATE_DIR / f"{role}.pt"), progress=run.progress,
                      loader_workers=run.cfg.data.loader_workers, mixer=students_mixer(run.cfg, role))
    return trainer.fit(model, x, y, run.data.x_val, run.data.y_val)


def students_mixer(cfg: ExperimentConfig, role: Role) -> Mixer | None:
    """distill.mix applies to the two students alike, so the control is trained on the same mixed batches; the
    teacher, the pruned teacher and the QAT fine-tune see plain batches."""
    mix = cfg.distill.mix
    if mix.kind == "none" or role not in (Role.STUDENT_SCRATCH, Role.STUDENT_KD):
        return None
    return Mixer(mix.kind, mix.alpha)


def sample(run: Run) -> torch.Tensor:
    """Two training rows of their own, for a method's setup passes: they must not edit the stored split."""
    return model_input(run.data.x_train[:2], run.accel)


def obtain_teacher(run: Run) -> Trained:
    """The loaded teacher when a checkpoint is given (kept as teacher.pt), else one trained here."""
    cfg = run.cfg
    if is_external(cfg.teacher.model):  # an ONNX or ensemble teacher: its files are kept in the run folder
        if distributed.is_main():
            run.loaded_teacher.keep(run.run_dir)
        return Trained(run.loaded_teacher.to(run.accel), None, cfg.teacher)
    if cfg.teacher.checkpoint:
        kept = run.run_dir / "teacher.pt"
        if distributed.is_main() and Path(cfg.teacher.checkpoint).resolve() != kept.resolve():  # not read from there
            save_checkpoint(kept, run.loaded_teacher, checkpoint_meta(cfg.teacher, run.data, Role.TEACHER))
        return Trained(run.loaded_teacher.to(run.accel), None, cfg.teacher)
    teacher = build_model(cfg.teacher, Side.TEACHER, run.data, cfg.seed)  # built afresh: the same RNG state as always
    train = cfg.teacher.train
    loss = PseudoLabel(train.pseudo_label, train.label_smoothing) if train.pseudo_label else \
        CrossEntropy(train.label_smoothing)
    return Trained(teacher, train_role(run, Role.TEACHER, teacher, cfg.teacher, loss), cfg.teacher)


def train_students(run: Run) -> dict[Role, Trained]:
    """The same student, same init, same batches, trained without (control) and with distillation."""
    cfg, teacher = run.cfg, run.teacher
    scratch = build_model(cfg.student, Side.STUDENT, run.data, cfg.seed + 1)
    init_state = {k: v.clone() for k, v in scratch.state_dict().items()}
    # set up on the control's copy of the student (same weights), since the cache stores the taps it names
    method = set_up_method(cfg.distill, cfg.student.train.label_smoothing, scratch.to(run.accel),
                           teacher.to(run.accel), sample(run), n_taught(run))
    cache = teacher_cache(run, method)  # None when the bank would exceed max_bytes: the teacher runs live
    why = cfg.distill.refusal(bank=cache is not None if cfg.distill.cache.enabled else None, run_dir=str(run.run_dir))
    if why:
        raise UserError(why)
    ce = CrossEntropy(cfg.student.train.label_smoothing)
    out = {Role.STUDENT_SCRATCH: Trained(scratch, train_role(run, Role.STUDENT_SCRATCH, scratch, cfg.student, ce,
                                                             cache=cache), cfg.student)}
    kd_student = build_model(cfg.student, Side.STUDENT, run.data, cfg.seed + 1)
    kd_student.load_state_dict(init_state)
    out[Role.STUDENT_KD] = Trained(kd_student, train_role(run, Role.STUDENT_KD, kd_student, cfg.student, method,
                                                          teacher=teacher, cache=cache), cfg.student)
    return out


def n_taught(run: Run) -> int:
    """Rows a distilled model trains on, the pool's included: the size of a bank keyed by row (CRD's memory)."""
    return len(run.data.x_train) + run.data.n_pool


def teacher_cache(run: Run, method: Method) -> TeacherCache | None:
    """The teacher's outputs on a bank of views, shared by the scratch and the distilled student (same inputs),
    when distill.cache asks for it; it covers the unlabelled pool after the labelled rows, so the scratch student
    reads the rows it always did."""
    cfg, cc = run.cfg, run.cfg.distill.cache
    if not cc.enabled:
        return None
    _, dtype = check_train_config(cfg.student.train, run.accel)
    t0 = time.perf_counter()
    x, y = run.data.training_rows(with_pool=True)
    spec = CacheSpec(run.run_dir / "cache" / "teacher_outputs", run.teacher.to(run.accel), x, y, cfg.data.augment,
                     cc.views, cfg.seed, method.teacher_taps, run.accel, dtype, cc.max_bytes,
                     compared_at=method.tap_shapes, max_ram_bytes=cc.max_ram_bytes, stats=run.data.pixel_stats)

    def load() -> TeacherCache | None:
        return load_or_build(spec)

    cache = distributed.on_main(load)  # rank 0 builds and writes the bank; the others then read that file
    if not distributed.is_main():
        cache = load()
    if cache is not None:
        emit("teacher_cache", views=cache.views, built=cache.built, seconds=time.perf_counter() - t0)
    return cache


def prune_teacher(run: Run) -> tuple[Trained, dict]:
    """Prune the trained teacher's channels to the budget, then fine-tune it by KD from the whole teacher (live,
    so a multi-view method trains as plain kd there)."""
    cfg, pc = run.cfg, run.cfg.compress.prune
    pruned = copy.deepcopy(run.teacher).cpu()
    info = prune_to_budget(pruned, run.data.input_shape, run.data.num_classes, pc.target_params, pc.target_macs,
                           pc.norm)
    train = cfg.student.train.model_copy(update={"epochs": pc.epochs or cfg.student.train.epochs})
    mcfg = ModelConfig(model=cfg.teacher.model, args=cfg.teacher.args, train=train)
    # the pruned teacher keeps the teacher's module names, so feature methods read its own feature_taps
    method = set_up_method(cfg.distill.live(student_taps=None), train.label_smoothing, pruned.to(run.accel),
                           run.teacher.to(run.accel), sample(run), n_taught(run))
    result = train_role(run, Role.TEACHER_PRUNED, pruned, mcfg, method, teacher=run.teacher)
    return Trained(pruned, result, cfg.teacher), info


def quantization_aware_finetune(run: Run) -> Trained:
    """A few epochs of KD with int8 simulated, starting from the KD student, at a lower learning rate; the
    teacher runs live, so a multi-view method trains as plain kd here."""
    cfg = run.cfg
    model = copy.deepcopy(run.trained[Role.STUDENT_KD].model)
    handles = attach_fake_quant(model, cfg.deploy.input_bits, sample(run).to(next(model.parameters()).device))
    train = cfg.student.train.model_copy(update={"epochs": cfg.deploy.qat_epochs, "schedule": "cosine",
                                                 "lr": cfg.student.train.lr * cfg.deploy.qat_lr_scale})
    mcfg = ModelConfig(model=cfg.student.model, args=cfg.student.args, train=train)
    method = build_method(cfg.distill.logit_only(), train.label_smoothing)
    result = train_role(run, Role.STUDENT_KD_QAT, model, mcfg, method, teacher=run.teacher)
    detach_fake_quant(model, handles)
    if distributed.is_main():
        save_checkpoint(run.run_dir / f"{Role.STUDENT_KD_QAT}.pt", model,
                        checkpoint_meta(mcfg, run.data, Role.STUDENT_KD_QAT))
    return Trained(model, result, cfg.student)

"""The pipeline, step by step: data -> teacher -> student -> train/load teacher -> scratch student (control)
-> distilled student -> evaluate all -> compare. Nothing else lives here.
"""
from __future__ import annotations

import copy
import datetime as dt
import errno
import json
import logging
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgedistill import distributed
from edgedistill.checkpoint import atomic_write_text, load_weights, read_checkpoint, save_checkpoint
from edgedistill.config import ExperimentConfig, ModelConfig, resolve_config
from edgedistill.compress import prune_to_budget
from edgedistill.compress.qat import attach_fake_quant, detach_fake_quant
from edgedistill.data import DataSplits, load_dataset
from edgedistill.deploy import (DeviceProfile, check_deploy, check_input_bits, deploy_model, device_formats,
                               early_fit_check, get_device)
from edgedistill.deploy.text_frontend import save_text_frontend
from edgedistill.distill import CrossEntropy, build_method
from edgedistill.distill.cache import TeacherCache, load_or_build
from edgedistill.distill.trainer import TrainResult, check_train_config, predict_logits, train_model
from edgedistill.errors import UserError, environment_error, first_line
from edgedistill.evaluate import classification_metrics, model_footprint
from edgedistill.modelbuild import build_model, tokenizer_args
from edgedistill.progress import emit, track
from edgedistill.quiet import current_library_log, library_log, strip_ansi
from edgedistill.rundir import discard_unstarted, environment, open_run_dir, remove_stale_temp_files, resumed_config
from edgedistill.report import SCHEMA_VERSION, comparison_table, write_reports

log = logging.getLogger("edgedistill")
ROLES = ("teacher", "student_scratch", "student_kd")
STATE_DIR = "state"  # per-epoch training states for --resume; removed once the run has finished


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    table: str


def resolve_accelerator(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("accelerator: 'cuda' was asked for but no CUDA device is visible; use 'auto' or 'cpu'")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def checkpoint_meta(mcfg: ModelConfig, data: DataSplits, role: str) -> dict:
    """What rebuilds the model without the config: its arguments as filled in from the data (a text model's
    vocabulary and padding id included)."""
    return {"role": role, "model": mcfg.model, "args": tokenizer_args(mcfg, role, data),
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "class_names": data.class_names}


def fit(model: nn.Module, mcfg: ModelConfig, cfg: ExperimentConfig, data: DataSplits, accel: torch.device,
        role: str, run_dir: Path, progress: bool, loss_fn, teacher: nn.Module | None = None,
        cache: TeacherCache | None = None) -> TrainResult:
    """Train one model, saving its best-on-validation checkpoint as <role>.pt."""
    meta = checkpoint_meta(mcfg, data, role)

    def save_best(m: nn.Module, row: dict) -> None:
        save_checkpoint(run_dir / f"{role}.pt", m, {**meta, "epoch": row["epoch"], "val_accuracy": row["val_accuracy"]})

    return train_model(model, data.x_train, data.y_train, data.x_val, data.y_val, mcfg.train, cfg.data.augment,
                       loss_fn, accel, cfg.seed, role, log_path=run_dir / "logs" / f"{role}.jsonl",
                       on_best=save_best, teacher=teacher, progress=progress,
                       state_path=run_dir / STATE_DIR / f"{role}.pt", cache=cache)


def load_teacher(cfg: ExperimentConfig, data: DataSplits) -> nn.Module:
    """Build the teacher and, when a checkpoint is given, load it and check its weights and outputs are finite,
    before any folder is touched or any student trained."""
    teacher = build_model(cfg.teacher, "teacher", data, cfg.seed)
    if cfg.teacher.checkpoint:
        path = cfg.teacher.checkpoint
        load_weights(teacher, read_checkpoint(path, "teacher.checkpoint"), path, "teacher.checkpoint")
        bad = next((name for name, t in teacher.state_dict().items()
                    if t.is_floating_point() and not torch.isfinite(t).all()), None)
        if bad:
            raise UserError(f"teacher.checkpoint: {path} holds NaN or inf in {bad!r}; it cannot teach. Use a "
                            "checkpoint saved before training diverged, or train the teacher here")
        with torch.no_grad():
            logits = teacher.eval()(torch.as_tensor(data.x_train[:64]))
        if not torch.isfinite(logits).all():
            raise UserError(f"teacher.checkpoint: {path} gives NaN or inf logits on training samples; it cannot "
                            "teach. Check that it was trained on data prepared like this dataset")
    return teacher


def obtain_teacher(cfg: ExperimentConfig, data: DataSplits, accel: torch.device, run_dir: Path,
                   progress: bool, loaded: nn.Module) -> tuple[nn.Module, TrainResult | None]:
    """Step 4: the loaded teacher when a checkpoint is given (kept as teacher.pt), else train one."""
    if cfg.teacher.checkpoint:
        if distributed.is_main():
            save_checkpoint(run_dir / "teacher.pt", loaded, checkpoint_meta(cfg.teacher, data, "teacher"))
        return loaded.to(accel), None
    teacher = build_model(cfg.teacher, "teacher", data, cfg.seed)  # built afresh: the same RNG state as always
    ce = CrossEntropy(cfg.teacher.train.label_smoothing)
    return teacher, fit(teacher, cfg.teacher, cfg, data, accel, "teacher", run_dir, progress, ce)


def train_students(cfg: ExperimentConfig, data: DataSplits, teacher: nn.Module, accel: torch.device,
                   run_dir: Path, progress: bool) -> dict[str, tuple[nn.Module, TrainResult]]:
    """Step 6: the same student, same init, same batches, trained without (control) and with distillation."""
    out = {}
    scratch = build_model(cfg.student, "student", data, cfg.seed + 1)
    init_state = {k: v.clone() for k, v in scratch.state_dict().items()}
    method = build_method(cfg.distill, cfg.student.train.label_smoothing)
    cache = teacher_cache(cfg, data, teacher, method, scratch, accel, run_dir) if cfg.distill.cache.enabled else None
    ce = CrossEntropy(cfg.student.train.label_smoothing)
    out["student_scratch"] = (scratch, fit(scratch, cfg.student, cfg, data, accel, "student_scratch", run_dir,
                                           progress, ce, cache=cache))
    kd_student = build_model(cfg.student, "student", data, cfg.seed + 1)
    kd_student.load_state_dict(init_state)
    out["student_kd"] = (kd_student, fit(kd_student, cfg.student, cfg, data, accel, "student_kd", run_dir,
                                         progress, method, teacher=teacher, cache=cache))
    return out


def teacher_cache(cfg: ExperimentConfig, data: DataSplits, teacher: nn.Module, method, student: nn.Module,
                  accel: torch.device, run_dir: Path) -> TeacherCache | None:
    """The teacher's outputs on a bank of views, shared by the scratch and the distilled student (same inputs)."""
    if hasattr(method, "setup"):  # feature methods: which teacher taps to store
        method.setup(student.to(accel), teacher, torch.as_tensor(data.x_train[:2]).to(accel))
    cc = cfg.distill.cache
    _, dtype = check_train_config(cfg.student.train, accel)
    t0 = time.perf_counter()

    def load() -> TeacherCache | None:
        return load_or_build(run_dir / "cache" / "teacher_outputs.pt", teacher.to(accel), data.x_train,
                             data.y_train, cfg.data.augment, cc.views, cfg.seed, getattr(method, "teacher_taps", []),
                             accel, dtype, cc.max_bytes, compared_at=getattr(method, "tap_shapes", None))

    cache = distributed.on_main(load)  # rank 0 builds and writes the bank; the others then read that file
    if not distributed.is_main():
        cache = load()
    if cache is not None:
        emit("teacher_cache", views=cache.views, built=cache.built, seconds=time.perf_counter() - t0)
    return cache


def prune_teacher(cfg: ExperimentConfig, data: DataSplits, teacher: nn.Module, accel: torch.device,
                  run_dir: Path, progress: bool) -> tuple[nn.Module, TrainResult, dict]:
    """Step 5: prune the trained teacher's channels to the budget, then fine-tune it by KD from the whole teacher."""
    pc = cfg.compress.prune
    pruned = copy.deepcopy(teacher).cpu()
    info = prune_to_budget(pruned, data.input_shape, data.num_classes, pc.target_params, pc.target_macs, pc.norm)
    train = cfg.student.train.model_copy(update={"epochs": pc.epochs or cfg.student.train.epochs})
    mcfg = ModelConfig(model=cfg.teacher.model, args=cfg.teacher.args, train=train)
    # the pruned teacher keeps the teacher's module names, so feature methods read its own feature_taps
    method = build_method(cfg.distill.model_copy(update={"student_taps": None}), train.label_smoothing)
    result = fit(pruned, mcfg, cfg, data, accel, "student_pruned", run_dir, progress, method, teacher=teacher)
    return pruned, result, info


def evaluate_model(model: nn.Module, data: DataSplits, accel: torch.device) -> tuple[dict, np.ndarray]:
    """Step 7: test metrics (never used to choose anything), validation accuracy, and the test logits."""
    test_logits = predict_logits(model, data.x_test, accel).numpy()
    val_pred = predict_logits(model, data.x_val, accel).argmax(1).numpy()
    return ({"test": classification_metrics(data.y_test, test_logits.argmax(1), data.class_names),
             "val": {"accuracy": float(np.mean(val_pred == data.y_val))}}, test_logits)


def model_record(role: str, mcfg: ModelConfig, model: nn.Module, trained: TrainResult | None, data: DataSplits,
                 accel: torch.device) -> tuple[dict, np.ndarray]:
    record = {"role": role, "model": mcfg.model, "args": mcfg.args, **model_footprint(model),
              "checkpoint": f"{role}.pt", "source": "trained" if trained else f"loaded:{mcfg.checkpoint}"}
    if trained:
        record["train"] = {"best_epoch": trained.best_epoch, "best_val_accuracy": trained.best_val_accuracy,
                           "epochs": len(trained.history), "seconds": trained.seconds, "history": trained.history}
    scores, test_logits = evaluate_model(model, data, accel)
    record.update(scores)
    return record, test_logits


def choose_student(cfg: ExperimentConfig, data: DataSplits, device: DeviceProfile, accel: torch.device,
                   run_dir: Path) -> dict:
    """Step 3 for student: auto. The result is kept in the run folder, so --resume does not search again."""
    from edgedistill.search import search_student

    saved = run_dir / "student_search.json"
    if saved.exists():
        return json.loads(saved.read_text())
    if distributed.world_size() > 1:
        raise UserError("student: auto runs in one process; search first without torchrun, then set student.model "
                        "and student.args to the chosen student")
    search = search_student(cfg, data, device, accel, build_model)
    atomic_write_text(saved, json.dumps(search, indent=2))
    return search


def warn_early_fit(cfg: ExperimentConfig, probe: nn.Module, data: DataSplits, device: DeviceProfile) -> dict:
    """Before any training: would the configured (untrained) student fit the device? Warn now, naming what overflows."""
    bits = cfg.deploy.input_bits if cfg.deploy.quantize else 8
    try:
        check_input_bits(probe, data.input_shape, data.x_train[:64], bits)
        verdict = early_fit_check(probe, data.input_shape, data.x_train[:64], device, formats_of(cfg, device), bits)
    except UserError:
        raise
    except Exception as exc:  # the check must not stop a run whose export would fail only later
        log.warning("could not check the student's fit before training (%s)", first_line(exc))
        return {"error": first_line(exc)}
    if not verdict["fits"]:
        log.warning("student %r will not fit device %r as %s: %s", cfg.student.model, device.name,
                    verdict["dtype"], "; ".join(verdict["overflows"]))
    return verdict


def deploy_one(cfg: ExperimentConfig, data: DataSplits, role: str, model: nn.Module, test_logits: np.ndarray,
               device: DeviceProfile, run_dir: Path) -> dict:
    """Export, quantize, score through ONNX Runtime, profile and fit-check one model; failures are recorded."""
    try:
        record = deploy_model(model, role, data.input_shape, run_dir / "export", data, test_logits,
                              data.x_train[:cfg.deploy.calibration_samples], device, formats_of(cfg, device),
                              cfg.deploy.latency_runs, cfg.deploy.input_bits)
    except Exception as exc:  # a failed export must not throw away hours of training
        if (env := environment_cause(exc)) is not None:
            raise env from exc  # a full disk is the machine's fault: the run stays unfinished and resumable
        record = {"error": first_line(exc)}
        log.warning("deployment of %s failed: %s (details in %s)", role, record["error"], note_failure(role, exc))
    emit("deployed", role=role, ok="error" not in record)
    return record


ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}


def environment_cause(exc: BaseException) -> OSError | None:
    """The OSError of the machine (full disk, read-only, I/O) behind an exporter's own exception, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in ENVIRONMENT_ERRNOS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def note_failure(role: str, exc: BaseException) -> str:
    """The whole failure (exporter dumps included) goes to the run's library log; the terminal gets one line."""
    path = current_library_log()
    if path is None:
        return "the traceback"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"--- deployment of {role} failed ---\n")
        fh.write(strip_ansi("".join(traceback.format_exception(exc))))
    return str(path)


def formats_of(cfg: ExperimentConfig, device: DeviceProfile) -> list[str]:
    return device_formats(device, cfg.deploy.formats, cfg.deploy.quantize)


def int8_loss_points(record: dict) -> float | None:
    """Validation accuracy int8 PTQ cost in points, through the preferred int8 runtime against PyTorch fp32
    (validation, so the test set chooses nothing)."""
    formats = record.get("formats", {})
    chosen = record.get("preferred")
    if chosen not in formats or formats[chosen]["dtype"] != "int8":
        chosen = next((k for k, f in formats.items() if f["dtype"] == "int8"), None)
    if chosen is None:
        return None
    return round(100 * (record["val_accuracy_torch"] - formats[chosen]["val_accuracy"]), 6)


def quantization_aware_finetune(cfg: ExperimentConfig, data: DataSplits, student: nn.Module, teacher: nn.Module,
                                accel: torch.device, run_dir: Path, progress: bool) -> tuple[nn.Module, TrainResult]:
    """Step 8b: a few epochs of KD with int8 simulated, starting from the KD student, at a lower learning rate."""
    model = copy.deepcopy(student)
    example = torch.as_tensor(data.x_train[:2]).to(next(model.parameters()).device)
    handles = attach_fake_quant(model, cfg.deploy.input_bits, example)
    train = cfg.student.train.model_copy(update={"epochs": cfg.deploy.qat_epochs, "schedule": "cosine",
                                                 "lr": cfg.student.train.lr * cfg.deploy.qat_lr_scale})
    mcfg = ModelConfig(model=cfg.student.model, args=cfg.student.args, train=train)
    logit = [m for m in cfg.distill.methods if m in ("kd", "dkd")] or ["kd"]  # feature adapters would start untrained
    method = build_method(cfg.distill.model_copy(update={"method": logit}), train.label_smoothing)
    result = fit(model, mcfg, cfg, data, accel, "student_kd_qat", run_dir, progress, method, teacher=teacher)
    detach_fake_quant(model, handles)
    if distributed.is_main():
        save_checkpoint(run_dir / "student_kd_qat.pt", model, checkpoint_meta(mcfg, data, "student_kd_qat"))
    return model, result


def compare(models: dict[str, dict]) -> dict:
    """Step 8: what the student cost and bought, relative to the teacher and to its own scratch control."""
    t, s, k = (models[r] for r in ROLES)
    acc = {r: models[r]["test"]["accuracy"] for r in ROLES}
    return {
        "kd_gain_over_scratch": acc["student_kd"] - acc["student_scratch"],
        "kd_accuracy_drop_vs_teacher": acc["teacher"] - acc["student_kd"],
        "scratch_accuracy_drop_vs_teacher": acc["teacher"] - acc["student_scratch"],
        "compression_ratio_params": t["params"] / max(k["params"], 1),
        "compression_ratio_size": t["size_fp32_bytes"] / max(k["size_fp32_bytes"], 1),
        "f1_gain_over_scratch": k["test"]["f1_macro"] - s["test"]["f1_macro"],
    }


@dataclass
class Prepared:
    """Everything checked before a run folder is created or replaced: the device, the data, the teacher (loaded
    from its checkpoint when one is given) and the early fit verdict of the configured student."""

    accel: torch.device
    device: DeviceProfile
    data: DataSplits
    teacher: nn.Module
    early_fit: dict | None


def prepare(cfg: ExperimentConfig) -> Prepared:
    """Steps 1-3 as checks: a wrong dataset, device, model or budget fails here in seconds, with nothing written."""
    if cfg.deterministic:  # warn_only: some CUDA kernels have no deterministic version
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    accel = distributed.init_from_env(resolve_accelerator(cfg.accelerator))
    for train in [cfg.student.train] + ([] if cfg.teacher.checkpoint else [cfg.teacher.train]):
        check_train_config(train, accel)
    device = get_device(cfg.device, cfg.device_catalog)  # 1. the edge device
    if cfg.latency_budget_ms is not None:
        device = device.model_copy(update={"latency_budget_ms": cfg.latency_budget_ms})
    if cfg.deploy.enabled:  # a runtime that is not installed is named now, with its pip command
        check_deploy(formats_of(cfg, device), device, cfg.deploy.input_bits if cfg.deploy.quantize else 8)
    split_seed = cfg.seed if cfg.data.split_seed is None else cfg.data.split_seed
    data = load_dataset(cfg.data.name, cfg.data.path, cfg.data.val_fraction, split_seed, cfg.data.options,
                        cfg.data.limit_train, cfg.data.limit_test)
    teacher = load_teacher(cfg, data)  # 2.
    pc = cfg.compress.prune
    if pc.enabled:  # a dry run on the untrained teacher: an unprunable teacher or budget fails now, not after training
        prune_to_budget(copy.deepcopy(teacher), data.input_shape, data.num_classes, pc.target_params, pc.target_macs,
                        pc.norm)
    early_fit = check_student(cfg, data, device) if cfg.student.model != "auto" else None  # 3.
    return Prepared(accel, device, data, teacher, early_fit)


def check_student(cfg: ExperimentConfig, data: DataSplits, device: DeviceProfile) -> dict | None:
    """Build the student, so a mismatch or a device overflow is reported before any training."""
    probe = build_model(cfg.student, "student", data, cfg.seed + 1)
    return warn_early_fit(cfg, probe, data, device) if cfg.deploy.enabled and distributed.is_main() else None


def run(config: ExperimentConfig | dict | str | Path | None = None, out_dir: str | Path | None = None,
        overrides: list[str] | None = None, overwrite: bool = False, progress: bool = True,
        resume: bool = False) -> RunResult:
    """Run the whole experiment and write one folder: config.yaml, checkpoints, logs, metrics.json, report.md.

    Every input is checked before the folder is created (or an old run in it replaced). With resume=True, out_dir
    is an unfinished run: finished models are loaded, the model in training continues from its last finished epoch.
    Under torchrun, every process trains and rank 0 alone writes files.
    """
    if resume and (out_dir is None or overwrite):
        raise UserError("--resume: name the run folder to continue, without --overwrite")
    cfg = resumed_config(Path(out_dir), config, overrides) if resume else resolve_config(config, overrides)
    prepared = prepare(cfg)
    run_dir = Path(out_dir) if resume else open_run_dir(cfg, out_dir, overwrite)
    if resume and distributed.is_main():
        remove_stale_temp_files(run_dir)
    try:
        with library_log(run_dir / "logs" / "libraries.log"):
            return execute(cfg, prepared, run_dir, progress)
    except BaseException as exc:
        discarded = not resume and distributed.is_main() and discard_unstarted(run_dir)
        if isinstance(exc, OSError):
            then = ("nothing was kept" if discarded else f"the run in {run_dir} is unfinished; once fixed, continue "
                    f"it with `edgedistill run --resume {run_dir}`")
            raise UserError(f"{environment_error(exc)}; {then}") from exc
        raise


def execute(cfg: ExperimentConfig, prep: Prepared, run_dir: Path, progress: bool) -> RunResult:
    """Steps 3-8 in the run folder: search, teacher, prune, students, evaluate, deploy, QAT, then the record."""
    data, accel, device, early_fit = prep.data, prep.accel, prep.device, prep.early_fit
    search = choose_student(cfg, data, device, accel, run_dir) if cfg.student.model == "auto" else None
    if search:  # 3. student: auto, the searched family and args from here on
        cfg = cfg.model_copy(update={"student": cfg.student.model_copy(update={"model": search["family"],
                                                                               "args": search["args"]})})
        early_fit = check_student(cfg, data, device)
    teacher, teacher_train = obtain_teacher(cfg, data, accel, run_dir, progress, prep.teacher)  # 4.
    trained = {"teacher": (teacher, teacher_train, cfg.teacher)}
    prune_info = None
    if cfg.compress.prune.enabled:  # 5.
        pruned, pruned_train, prune_info = prune_teacher(cfg, data, teacher, accel, run_dir, progress)
        trained["student_pruned"] = (pruned, pruned_train, cfg.teacher)
    students = train_students(cfg, data, teacher, accel, run_dir, progress)  # 6.
    trained |= {r: (m, t, cfg.student) for r, (m, t) in students.items()}
    models, test_logits = {}, {}
    for role, (model, result, mcfg) in trained.items():  # 7.
        models[role], test_logits[role] = model_record(role, mcfg, model, result, data, accel)
    models["student_kd"]["distill"] = cfg.distill.model_dump()
    if prune_info is not None:
        models["student_pruned"] |= {"pruning": prune_info, "distill": cfg.distill.model_dump()}
    if cfg.deploy.enabled:  # 8.
        deploy_all(cfg, data, trained, models, test_logits, device, teacher, accel, run_dir, progress)
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "name": cfg.name,
        "config": cfg.model_dump(mode="json"),
        "environment": environment(accel),
        "dataset": data.summary(),
        "device": device.model_dump(),
        "early_fit_check": early_fit,
        "student_search": search,
        "models": models,
        "comparison": compare(models),
    }
    finish(run_dir, metrics)
    return RunResult(run_dir, metrics, comparison_table(metrics))


def deploy_all(cfg: ExperimentConfig, data: DataSplits, trained: dict, models: dict, test_logits: dict,
               device: DeviceProfile, teacher: nn.Module, accel: torch.device, run_dir: Path, progress: bool) -> None:
    """Step 8: export every model; QAT the KD student when int8 PTQ costs it too much on validation."""
    main = distributed.is_main()
    for role, (model, _, _) in track(trained.items(), desc="export, quantize, profile", unit="model",
                                      enabled=progress and main, total=len(trained)):
        models[role]["deploy"] = deploy_one(cfg, data, role, model, test_logits[role], device, run_dir) if main else {}
    loss = distributed.broadcast(int8_loss_points(models["student_kd"]["deploy"]))
    if cfg.deploy.qat == "always" or (cfg.deploy.qat == "auto" and loss is not None
                                      and loss > cfg.deploy.qat_threshold_points):
        qat_model, qat_train = quantization_aware_finetune(cfg, data, trained["student_kd"][0], teacher, accel,
                                                           run_dir, progress)
        record, qat_logits = model_record("student_kd_qat", cfg.student, qat_model, qat_train, data, accel)
        record["deploy"] = deploy_one(cfg, data, "student_kd_qat", qat_model, qat_logits, device, run_dir) \
            if main else {}
        record["qat_reason"] = ("deploy.qat: always" if cfg.deploy.qat == "always"
                                else f"int8 PTQ lost {loss:.2f} validation points")
        record["ptq_int8_val_loss_points"] = loss
        models["student_kd_qat"] = record
    if data.text and main:  # the tokenizer beside the exports, so they classify raw strings
        save_text_frontend(run_dir / "export", data.text, data.class_names)


def finish(run_dir: Path, metrics: dict) -> None:
    """Reports first, metrics.json last: a run whose metrics.json exists finished every step before it."""
    if distributed.is_main():
        write_reports(run_dir, metrics)
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        shutil.rmtree(run_dir / STATE_DIR, ignore_errors=True)  # a finished run has nothing left to resume
    distributed.barrier()
    emit("finished", run_dir=str(run_dir), comparison=metrics["comparison"])

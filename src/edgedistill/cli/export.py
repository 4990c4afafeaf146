"""`edgedistill export RUN_DIR --format F`: a finished run's checkpoints to other formats, without retraining, so
a user who changes device keeps their students. The new files go to RUN_DIR/export, their records into
metrics.json beside the old ones, and the reports are rebuilt."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn as nn

from edgedistill.atomic import atomic_write_text

from edgedistill.checkpoint import load_weights, read_checkpoint
from edgedistill.config import ExperimentConfig, resolve_config
from edgedistill.data import DataSplits
from edgedistill.deploy import (DeviceProfile, NoFormat, check_deploy, deploy_model, deploy_plan, get_device,
                                preferred_format)
from edgedistill.errors import UserError
from edgedistill.metrics import Metrics, produce_metrics
from edgedistill.models.build import build_model
from edgedistill.models.evaluate import predict_logits
from edgedistill.pipeline.prepare import load_data
from edgedistill.report import read_metrics, write_reports
from edgedistill.roles import Role, Side
from edgedistill.teachers import is_external


def checkpoint_path(run_dir: Path, role: str) -> Path:
    """<role>.pt; a run from before metrics schema 3 named the pruned teacher's student_pruned.pt."""
    path = run_dir / f"{role}.pt"
    if not path.exists() and role == Role.TEACHER_PRUNED:
        return run_dir / "student_pruned.pt"
    return path


def rebuild(cfg, role: str, data: DataSplits, run_dir: Path) -> nn.Module:
    """The role's architecture from the config (a pruned teacher: the teacher pruned again to the same budget,
    which picks the same channels from the same trained weights), then its checkpoint's weights."""
    from edgedistill.compress import prune_to_budget

    side = Role(role).side
    model = build_model(getattr(cfg, side.value), side, data, cfg.seed)
    if role == Role.TEACHER_PRUNED:
        load_weights(model, read_checkpoint(run_dir / "teacher.pt"), run_dir / "teacher.pt")
        pc = cfg.compress.prune
        model = copy.deepcopy(model)
        prune_to_budget(model, data.input_shape, data.num_classes, pc.target_params, pc.target_macs, pc.norm)
    path = checkpoint_path(run_dir, role)
    load_weights(model, read_checkpoint(path, f"{role}.pt"), path, f"{role}.pt")
    return model.eval()


def load_run(run_dir: Path) -> tuple[dict, ExperimentConfig, DeviceProfile, DataSplits]:
    """A finished run's metrics, config (with the student a `student: auto` search chose), device profile and data
    splits, as the run saw them."""
    metrics = read_metrics(run_dir)
    cfg = chosen_student(resolve_config(run_dir / "config.yaml"), metrics, run_dir)
    device = get_device(cfg.device, cfg.device_catalog)
    if cfg.latency_budget_ms is not None:
        device = device.model_copy(update={"latency_budget_ms": cfg.latency_budget_ms})
    return metrics, cfg, device, load_data(cfg)


def chosen_student(cfg: ExperimentConfig, metrics: dict, run_dir: Path) -> ExperimentConfig:
    """The config with `student: auto` replaced by the student the search chose: config.yaml keeps `auto`, and
    metrics.json's student_search (or the KD student's record) names the family and arguments."""
    if cfg.student.model != "auto":
        return cfg
    search = metrics.get("student_search") or {}
    kd = metrics["models"].get(Role.STUDENT_KD.value) or {}
    family, args = search.get("family") or kd.get("model"), search.get("args", kd.get("args"))
    if not family or family == "auto" or args is None:
        raise UserError(f"{run_dir / 'metrics.json'}: the run used student: auto but does not name the student the "
                        "search chose (student_search.family and args), so it cannot be rebuilt; run again with "
                        "student.model and student.args set to the student wanted")
    student = cfg.student.model_copy(update={"model": family, "args": args})
    return cfg.model_copy(update={Side.STUDENT.value: student})


def not_exported(cfg: ExperimentConfig, role: str) -> str | None:
    """Why a role of this run is never exported: an ONNX or ensemble teacher is not a torch module."""
    if role != Role.TEACHER or not is_external(cfg.teacher.model):
        return None
    if cfg.teacher.model == "onnx":
        from edgedistill.teachers.onnx import OnnxTeacher

        return OnnxTeacher.not_exported
    from edgedistill.teachers.ensemble import EnsembleTeacher

    return EnsembleTeacher.not_exported


def exportable(run_dir: Path, cfg: ExperimentConfig, metrics: dict, roles: list[str] | None) -> list[str]:
    """The roles to export: those asked for, else every one the run made that can be exported; each must still have
    its weights (a missing <role>.pt is named, never left out without a word)."""
    unknown = sorted(set(roles or []) - set(metrics["models"]))
    if unknown:
        raise UserError(f"--role: {run_dir} has no model {unknown[0]!r}; its models are "
                        f"{', '.join(metrics['models'])}")
    skipped = {r: metrics["models"][r].get("deploy_skipped") or not_exported(cfg, r) for r in metrics["models"]}
    for role in roles or []:
        if skipped[role]:
            raise UserError(f"--role {role}: nothing to export: {skipped[role]}")
    chosen = roles or [r for r in metrics["models"] if not skipped[r]]
    for role in chosen:
        if not checkpoint_path(run_dir, role).is_file():
            asked = f"--role {role}" if roles else f"export {run_dir}"
            raise UserError(f"{asked}: {checkpoint_path(run_dir, role)} is missing, so there are no weights to "
                            f"export; restore it{'' if roles else ', or name the other models with --role'}")
    return [r for r in metrics["models"] if r in chosen]


def merge_deploy(old: dict, new: dict, device: DeviceProfile, uses: list[str] | tuple[str, ...]) -> dict:
    """The run's earlier formats kept, the new ones added or replaced, and the formats that failed now noted; the
    verdict keeps speaking for a format the run's device uses (`uses`: its plan's and its profile's) where it can."""
    if "error" in old or not old:
        old = {"macs": new.get("macs"), "formats": {}, "fit": {}, "failed": {}}
    merged = {**old, "formats": {**old.get("formats", {}), **new.get("formats", {})},
              "fit": {**old.get("fit", {}), **new.get("fit", {})},
              "failed": {**{k: v for k, v in old.get("failed", {}).items() if k not in new.get("formats", {})},
                         **new.get("failed", {})}}
    if "val_accuracy_torch" in new:
        merged["val_accuracy_torch"] = new["val_accuracy_torch"]
    if not merged["formats"]:
        return {"error": "; ".join(merged["failed"].values()), "failed": merged["failed"]}
    merged["preferred"] = preferred_format(list(merged["formats"]), device, uses)
    return merged


def export_run(run_dir: str | Path, formats: list[str],
               roles: list[str] | None = None) -> tuple[dict, list[str]]:
    """Deploy the models of a finished run (every one, or `roles`) to `formats` and merge the records into its
    metrics.json, holding the run's lock, and only when its data and device catalogue are those it was made with;
    also returns one line per format that could not be made, naming the model and what stopped it."""
    from edgedistill.pipeline.inputs import verify_config, verify_inputs
    from edgedistill.pipeline.rundir import claim_existing

    lock = claim_existing(Path(run_dir), "export")
    try:
        if (Path(run_dir) / "metrics.json").is_file() and not (Path(run_dir) / "config.yaml").is_file():
            raise UserError(f"export {run_dir}: config.yaml, the settings the run's models were made under, is "
                            "missing or not a file; restore it, or rerun the experiment")
        verify_inputs(Path(run_dir), "export", ("data", "device"))
        verify_config(Path(run_dir), "export")
        return _export(Path(run_dir), formats, roles)
    finally:
        if lock is not None:
            lock.release()


def _export(run_dir: Path, formats: list[str], roles: list[str] | None = None) -> tuple[dict, list[str]]:
    metrics = read_metrics(run_dir)  # a folder that is not a finished run fails before the data loads
    cfg = resolve_config(run_dir / "config.yaml")
    chosen = exportable(run_dir, cfg, metrics, roles)
    plan = deploy_plan(cfg.deploy, get_device(cfg.device, cfg.device_catalog), formats)
    check_deploy(plan.formats, plan.device, plan.input_bits, field_name="--format")
    metrics, cfg, device, data = load_run(run_dir)
    uses = (*deploy_plan(cfg.deploy, device).formats, *device.formats)  # the verdict keeps speaking for one of these
    # every chosen role rebuilt and its checkpoint loaded before any file is written: a bad checkpoint of a later
    # role must not stop the command after an earlier role's files were made
    models = {role: rebuild(cfg, role, data, run_dir) for role in chosen}
    failed: dict[str, dict[str, str]] = {}  # format -> model -> why
    for role, model in models.items():
        logits = predict_logits(model, data.x_test, torch.device("cpu")).numpy()
        try:
            new = deploy_model(model, role, data.input_shape, run_dir / "export", data, logits,
                               data.x_train[:cfg.deploy.calibration_samples], device, list(plan.formats),
                               cfg.deploy.latency_runs, plan.input_bits)
        except NoFormat as exc:
            new = {"formats": {}, "fit": {}, "failed": exc.failed}
        for fmt, why in new["failed"].items():
            failed.setdefault(fmt, {})[role] = why
        metrics["models"][role]["deploy"] = merge_deploy(metrics["models"][role].get("deploy") or {}, new, device, uses)
    metrics = produce_metrics(Metrics.model_validate(metrics))
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))  # the record first, then its reports
    write_reports(run_dir, metrics)
    return metrics, [f"--format {fmt}: could not export {', '.join(why)}: {next(iter(why.values()))}"
                     for fmt, why in failed.items()]

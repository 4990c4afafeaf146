"""Scoring and recording: each model's test and validation scores, the comparison, and metrics.json, written last."""
from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import torch
import torch.nn as nn

from edgedistill import distributed
from edgedistill.checkpoint import atomic_write_text
from edgedistill.data import DataSplits
from edgedistill.distill.trainer import predict_logits
from edgedistill.evaluate import classification_metrics, model_footprint
from edgedistill.metrics import SCHEMA_VERSION, produce_metrics
from edgedistill.pipeline.state import Run, Trained
from edgedistill.pipeline.training import STATE_DIR
from edgedistill.progress import emit
from edgedistill.report import write_reports
from edgedistill.roles import COMPARED, Role
from edgedistill.rundir import environment
from edgedistill.teachers.base import ExternalTeacher


def evaluate_model(model: nn.Module, data: DataSplits, accel: torch.device) -> tuple[dict, np.ndarray]:
    """Test metrics (never used to choose anything), validation accuracy, and the test logits."""
    test_logits = predict_logits(model, data.x_test, accel).numpy()
    val_pred = predict_logits(model, data.x_val, accel).argmax(1).numpy()
    return ({"test": classification_metrics(data.y_test, test_logits.argmax(1), data.class_names),
             "val": {"accuracy": float(np.mean(val_pred == data.y_val))}}, test_logits)


def model_record(role: Role, trained: Trained, data: DataSplits, accel: torch.device) -> tuple[dict, np.ndarray]:
    """metrics.json's entry for one model: what it is, its footprint, how it trained and how it scores."""
    mcfg, result = trained.mcfg, trained.result
    record = {"role": str(role), "model": mcfg.model, "args": mcfg.args, **model_footprint(trained.model),
              "checkpoint": f"{role}.pt", "source": "trained" if result else f"loaded:{mcfg.checkpoint}"}
    if result:
        last = result.history[-1] if result.history else {}
        record["train"] = {"best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
                           "epochs": len(result.history), "seconds": result.seconds, "history": result.history,
                           "rows_per_epoch": {"labeled": last.get("rows_labeled", 0),
                                              "unlabeled": last.get("rows_unlabeled", 0)}}
    if isinstance(trained.model, ExternalTeacher):
        record.update(trained.model.run_record())
    scores, test_logits = evaluate_model(trained.model, data, accel)
    record.update(scores)
    return record, test_logits


def compare(models: dict[str, dict]) -> dict:
    """What the student cost and bought, relative to the teacher and to its own scratch control."""
    t, s, k = (models[r] for r in COMPARED)
    acc = {r: models[r]["test"]["accuracy"] for r in COMPARED}
    return {
        "kd_gain_over_scratch": acc[Role.STUDENT_KD] - acc[Role.STUDENT_SCRATCH],
        "kd_accuracy_drop_vs_teacher": acc[Role.TEACHER] - acc[Role.STUDENT_KD],
        "scratch_accuracy_drop_vs_teacher": acc[Role.TEACHER] - acc[Role.STUDENT_SCRATCH],
        "compression_ratio_params": t["params"] / max(k["params"], 1),
        "compression_ratio_size": t["size_fp32_bytes"] / max(k["size_fp32_bytes"], 1),
        "f1_gain_over_scratch": k["test"]["f1_macro"] - s["test"]["f1_macro"],
    }


def build_metrics(run: Run) -> dict:
    """The whole record of the run, checked against the metrics.json schema the readers use."""
    cfg = run.cfg
    models = {str(role): record for role, record in run.records.items()}
    return produce_metrics({
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "name": cfg.name,
        "config": cfg.model_dump(mode="json"),
        "environment": environment(run.accel),
        "dataset": run.data.summary(),
        "device": run.profile.model_dump(),
        "early_fit_check": run.early_fit,
        "student_search": run.search,
        "models": models,
        "comparison": compare(models),
    })


def finish(run: Run) -> None:
    """Reports first, metrics.json last: a run whose metrics.json exists finished every step before it."""
    if distributed.is_main():
        write_reports(run.run_dir, run.metrics)
        atomic_write_text(run.run_dir / "metrics.json", json.dumps(run.metrics, indent=2))
        shutil.rmtree(run.run_dir / STATE_DIR, ignore_errors=True)  # a finished run has nothing left to resume
    distributed.barrier()
    emit("finished", run_dir=str(run.run_dir), comparison=run.metrics["comparison"])

"""Scoring and recording: each model's test and validation scores, the comparison, and metrics.json, written last."""
from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import torch
import torch.nn as nn

from edgedistill import distributed
from edgedistill.atomic import atomic_write_text
from edgedistill.data import DataSplits
from edgedistill.metrics import SCHEMA_VERSION, produce_metrics
from edgedistill.models.evaluate import predict_logits
from edgedistill.models.evaluate import classification_metrics, model_footprint
from edgedistill.train.trainer import TrainResult
from edgedistill.results import (Comparison, Dataset, Device, Environment, Metrics, ModelRecord, Models, Rows,
                                 TestScores, Train, ValScores)
from edgedistill.pipeline.rundir import environment
from edgedistill.pipeline.state import Run, Trained
from edgedistill.pipeline.training import STATE_DIR
from edgedistill.progress import emit
from edgedistill.report import write_reports
from edgedistill.roles import COMPARED, Role
from edgedistill.teachers.base import ExternalTeacher


def evaluate_model(model: nn.Module, data: DataSplits, accel: torch.device) -> tuple[dict, np.ndarray]:
    """Test metrics (never used to choose anything), validation accuracy, and the test logits."""
    test_logits = predict_logits(model, data.x_test, accel).numpy()
    val_pred = predict_logits(model, data.x_val, accel).argmax(1).numpy()
    return ({"test": classification_metrics(data.y_test, test_logits.argmax(1), data.class_names),
             "val": {"accuracy": float(np.mean(val_pred == data.y_val))}}, test_logits)


def model_record(role: Role, trained: Trained, data: DataSplits, accel: torch.device
                 ) -> tuple[ModelRecord, np.ndarray]:
    """metrics.json's entry for one model: what it is, its footprint, how it trained and how it scores."""
    mcfg = trained.mcfg
    fields = {"role": str(role), "model": mcfg.model, "args": mcfg.args, **model_footprint(trained.model),
              "checkpoint": f"{role}.pt", "source": "trained" if trained.result else f"loaded:{mcfg.checkpoint}"}
    if trained.result:
        fields["train"] = train_record(trained.result)
    if isinstance(trained.model, ExternalTeacher):
        fields |= trained.model.run_record()
    scores, test_logits = evaluate_model(trained.model, data, accel)
    return ModelRecord(**fields, test=TestScores(**scores["test"]), val=ValScores(**scores["val"])), test_logits


def train_record(result: TrainResult) -> Train:
    """How a model trained: its best epoch, its curve, and the rows its last epoch took."""
    last = result.history[-1] if result.history else {}
    return Train(best_epoch=result.best_epoch, best_val_accuracy=result.best_val_accuracy,
                 epochs=len(result.history), seconds=result.seconds, history=result.history,
                 rows_per_epoch=Rows(labeled=last.get("rows_labeled", 0), unlabeled=last.get("rows_unlabeled", 0)))


def compare(models: dict[Role, ModelRecord]) -> Comparison:
    """What the student cost and bought, relative to the teacher and to its own scratch control."""
    t, s, k = (models[r] for r in COMPARED)
    return Comparison(
        kd_gain_over_scratch=k.test.accuracy - s.test.accuracy,
        kd_accuracy_drop_vs_teacher=t.test.accuracy - k.test.accuracy,
        scratch_accuracy_drop_vs_teacher=t.test.accuracy - s.test.accuracy,
        compression_ratio_params=t.params / max(k.params, 1),
        compression_ratio_size=t.size_fp32_bytes / max(k.size_fp32_bytes, 1),
        f1_gain_over_scratch=k.test.f1_macro - s.test.f1_macro,
    )


def build_metrics(run: Run) -> dict:
    """The whole record of the run, serialised once from the typed records the stages built."""
    cfg = run.cfg
    return produce_metrics(Metrics(
        schema_version=SCHEMA_VERSION,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        name=cfg.name,
        config=cfg.model_dump(mode="json"),
        environment=Environment(**environment(run.accel)),
        dataset=Dataset(**run.data.summary()),
        device=Device(**run.profile.model_dump()),
        early_fit_check=run.early_fit,
        student_search=run.search,
        models=Models(**{str(role): record for role, record in run.records.items()}),
        comparison=compare(run.records),
    ))


def finish(run: Run) -> None:
    """Reports first, metrics.json last: a run whose metrics.json exists finished every step before it."""
    if distributed.is_main():
        write_reports(run.run_dir, run.metrics)
        atomic_write_text(run.run_dir / "metrics.json", json.dumps(run.metrics, indent=2))
        shutil.rmtree(run.run_dir / STATE_DIR, ignore_errors=True)  # a finished run has nothing left to resume
    distributed.barrier()
    emit("finished", run_dir=str(run.run_dir), comparison=run.metrics["comparison"])

"""The schema of metrics.json: what the reports, `compare` and `--seeds` read from a run. An old or hand-edited file
is checked against it once, on reading, so a missing key is named in one line instead of surfacing as a KeyError
deep inside a report. Every key the tool writes is named in results.py: an unknown one is refused, on writing and on
reading, so a misspelt optional key cannot pass.
"""
from __future__ import annotations

from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from edgedistill.errors import UserError
from edgedistill.roles import Role
from edgedistill.strict import error_location
from edgedistill.results import (Check, Checks, ClassScores, Comparison, Dataset, Deploy, Device, EarlyFit,
                                 Environment, Failure, Fit, Format, Latency, LatencyCheck, Metrics, ModelRecord,
                                 Models, Npu, Pruning, Record, Rows, TestScores, Train, ValScores)

SCHEMA_VERSION = 4  # documented in docs/metrics.md; older versions are migrated on reading


def migrate_v1(raw: dict) -> dict:
    """Version 1 keyed formats by dtype alone (all were ONNX Runtime files) and named its accuracies after it."""
    for record in raw.get("models", {}).values():
        dep = record.get("deploy") if isinstance(record, dict) else None
        if not isinstance(dep, dict) or "error" in dep:
            continue
        rename = {dtype: f"onnxruntime-{dtype}" for dtype in dep.get("formats", {})}
        formats = {}
        for dtype, fmt in dep.get("formats", {}).items():
            fmt = dict(fmt)
            fmt.setdefault("runtime", "onnxruntime")
            fmt.setdefault("dtype", dtype)
            for old, new in (("test_accuracy_onnxruntime", "test_accuracy"), ("val_accuracy_onnxruntime", "val_accuracy")):
                if old in fmt:
                    fmt[new] = fmt.pop(old)
            formats[rename[dtype]] = fmt
        dep["formats"] = formats
        dep["fit"] = {rename.get(k, k): v for k, v in dep.get("fit", {}).items()}
        if "preferred_dtype" in dep:
            dep["preferred"] = rename.get(dep.pop("preferred_dtype"))
    raw["schema_version"] = 2
    return raw


def migrate_v2(raw: dict) -> dict:
    """Version 2 called the pruned teacher `student_pruned`; it is a teacher, so version 3 says `teacher_pruned`."""
    models = raw.get("models")
    if isinstance(models, dict) and isinstance(models.get("student_pruned"), dict):
        record = models.pop("student_pruned")
        record["role"] = Role.TEACHER_PRUNED.value
        models[Role.TEACHER_PRUNED.value] = record
    raw["schema_version"] = 3
    return raw


def migrate_v3(raw: dict) -> dict:
    """Version 4 adds the unlabelled pool: a version-3 run had none. How many rows each model saw per epoch
    (`train.rows_per_epoch`) was not recorded, and stays absent."""
    dataset = raw.get("dataset")
    if isinstance(dataset, dict):
        dataset.setdefault("n_unlabeled", 0)
    raw["schema_version"] = 4
    return raw


MIGRATIONS = {1: migrate_v1, 2: migrate_v2, 3: migrate_v3}  # each takes a file one version forward


def known_keys(value: Any, annotation: Any) -> Any:
    """An older file's value with only the keys the schema names: what an older version wrote that no reader uses
    is dropped on reading rather than refused."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        fields = annotation.model_fields
        return {k: known_keys(v, fields[k].annotation) for k, v in value.items() if k in fields}
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Union and isinstance(value, dict):
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        best = max(models, key=lambda m: len(value.keys() & m.model_fields.keys()), default=None)
        return known_keys(value, best) if best is not None else value
    if origin is dict and isinstance(value, dict):
        return {k: known_keys(v, args[1]) for k, v in value.items()}
    if origin is list and isinstance(value, list):
        return [known_keys(v, args[0]) for v in value]
    return value


def check_metrics(raw: Any, source: str) -> dict:
    """The raw dict, once it holds every key the reports read; otherwise one line naming the first bad key."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: holds {type(raw).__name__}, not a metrics object; restore it from a copy or rerun "
                        "the experiment")
    if "schema_version" not in raw:
        raise UserError(f"{source}: missing key 'schema_version'; it is not an edgedistill metrics.json (restore it "
                        "from a copy or rerun the experiment)")
    migrated = raw["schema_version"] in MIGRATIONS
    while raw["schema_version"] in MIGRATIONS:
        raw = MIGRATIONS[raw["schema_version"]](raw)
    if migrated:
        raw = known_keys(raw, Metrics)
    if raw["schema_version"] != SCHEMA_VERSION:
        raise UserError(f"{source}: schema_version {raw.get('schema_version')!r} is not {SCHEMA_VERSION}; it was "
                        "written by another tool or version, so rerun the experiment")
    try:
        Metrics.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        problem = (f"missing key {error_location(first)!r}" if first["type"] == "missing"
                   else f"key {error_location(first)!r}: {first['msg']}")
        raise UserError(f"{source}: {problem}; it is not a complete edgedistill metrics.json (older or edited "
                        "by hand?), so rerun the experiment") from None
    return raw


def produce_metrics(metrics: Metrics) -> dict:
    """What metrics.json holds, serialised once from the typed record the pipeline built (and checked as it was
    built): a run can never write a file its own report would refuse. Keys never set stay absent; NaN survives."""
    return metrics.to_json()


__all__ = ["Check", "Checks", "ClassScores", "Comparison", "Dataset", "Deploy", "Device", "EarlyFit", "Environment",
           "Failure", "Fit", "Format", "Latency", "LatencyCheck", "Metrics", "ModelRecord", "Models", "Npu", "Pruning",
           "Record", "Rows", "TestScores", "Train", "ValScores", "MIGRATIONS", "SCHEMA_VERSION", "check_metrics",
           "known_keys", "produce_metrics"]

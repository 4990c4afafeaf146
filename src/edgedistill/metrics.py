"""The schema of metrics.json: what the reports, `compare` and `--seeds` read from a run. An old or hand-edited file
is checked against it once, on reading, so a missing key is named in one line instead of surfacing as a KeyError
deep inside a report. Keys the schema does not name are kept as they are.
"""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, create_model, model_validator

from edgedistill.errors import UserError
from edgedistill.roles import COMPARED, Role

SCHEMA_VERSION = 4  # documented in docs/metrics.md; older versions are migrated on reading


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ClassScores(Open):
    precision: float
    recall: float
    f1: float
    support: int


class TestScores(Open):
    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]
    absent_classes: list[str] = []


class Check(Open):
    used: Any
    budget: Any
    margin_pct: Optional[float]
    fits: bool


class LatencyCheck(Check):
    how: str


class Checks(Open):
    dtype: Check
    flash: Check
    ram: Check
    latency_ms: LatencyCheck


class Fit(Open):
    fits: bool
    dtype: str
    overflows: list[str]
    checks: Checks


class Latency(Open):
    latency_p50_ms: float
    latency_p95_ms: float
    throughput_per_s: float
    throughput_batch: int
    threads: int


class Format(Open):
    runtime: str
    dtype: str
    file: str
    file_bytes: int
    peak_activation_bytes: int
    test_accuracy: float
    val_accuracy: float
    host_latency: Latency


class Deploy(Open):
    """Either an export that ran (formats and their fit) or the error that stopped it."""

    error: Optional[str] = None
    macs: Optional[int] = None
    formats: dict[str, Format] = {}  # keyed runtime-dtype: tflm-int8, onnxruntime-fp32, ...
    fit: dict[str, Fit] = {}
    failed: dict[str, str] = {}  # formats whose converter or runtime failed, with the reason
    preferred: Optional[str] = None

    @model_validator(mode="after")
    def _complete(self) -> "Deploy":
        if self.error is None:
            for key in ("macs", "preferred"):
                if getattr(self, key) is None:
                    raise ValueError(f"missing key {key!r} (or 'error')")
            if not self.formats or set(self.formats) != set(self.fit):
                raise ValueError("'formats' and 'fit' must name the same formats")
            if self.preferred not in self.formats:
                raise ValueError(f"'preferred' names {self.preferred!r}, which is not among 'formats'")
        return self


class Rows(Open):
    labeled: int
    unlabeled: int


class Train(Open):
    best_epoch: int
    best_val_accuracy: float
    epochs: int
    history: list[dict[str, Any]]
    rows_per_epoch: Optional[Rows] = None  # from version 4; the training rows of the last epoch


class ModelRecord(Open):
    role: str
    model: str
    args: dict[str, Any]
    params: int
    size_fp32_bytes: int
    test: TestScores
    train: Optional[Train] = None
    deploy: Optional[Deploy] = None


Models = create_model(  # keyed by roles.Role: the compared models always, the others when the run made them
    "Models", __base__=Open,
    **{role.value: (ModelRecord, ...) if role in COMPARED else (Optional[ModelRecord], None) for role in Role})


class Dataset(Open):
    name: str
    description: str
    input_shape: list[int]
    num_classes: int
    class_names: list[str]
    n_train: int
    n_val: int
    n_test: int
    n_unlabeled: int


class Device(Open):
    name: str
    description: str
    flash_bytes: int
    ram_bytes: int
    macs_source: str


class Environment(Open):
    platform: str
    gpu: Optional[str]
    torch: str
    accelerator: str


class Comparison(Open):
    kd_gain_over_scratch: float
    kd_accuracy_drop_vs_teacher: float
    compression_ratio_params: float


class Metrics(Open):
    schema_version: int
    created: str
    name: str
    config: dict[str, Any]
    environment: Environment
    dataset: Dataset
    device: Device
    models: Models
    comparison: Comparison


def _where(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


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


def check_metrics(raw: Any, source: str) -> dict:
    """The raw dict, once it holds every key the reports read; otherwise one line naming the first bad key."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: holds {type(raw).__name__}, not a metrics object")
    if "schema_version" not in raw:
        raise UserError(f"{source}: missing key 'schema_version'; it is not an edgedistill metrics.json")
    while raw["schema_version"] in MIGRATIONS:
        raw = MIGRATIONS[raw["schema_version"]](raw)
    if raw["schema_version"] != SCHEMA_VERSION:
        raise UserError(f"{source}: schema_version {raw.get('schema_version')!r} is not {SCHEMA_VERSION}; it was "
                        "written by another tool or version, so rerun the experiment")
    try:
        Metrics.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        problem = (f"missing key {_where(first)!r}" if first["type"] == "missing"
                   else f"key {_where(first)!r}: {first['msg']}")
        raise UserError(f"{source}: {problem}; it is not a complete edgedistill metrics.json (older or edited "
                        "by hand?), so rerun the experiment") from None
    return raw


def produce_metrics(raw: dict) -> dict:
    """What the pipeline writes, checked by the same model the readers check with: a run can never write a file
    that its own report would refuse. The dict itself is written, so key order and NaN survive as they were."""
    Metrics.model_validate(raw)
    return raw

"""The typed results of a run: what each model scored, how it deployed per format and whether it fits, as the
stages build them. metrics.json is their serialisation (metrics.py reads it back); every key is named here."""
from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, create_model, model_validator

from edgedistill.roles import COMPARED, Role


class Record(BaseModel):
    """A part of metrics.json this tool writes: every key it may hold is named, so a misspelt one is an error."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def to_json(self) -> dict:
        """The dict metrics.json holds for it: the keys that were given, in the schema's order."""
        return self.model_dump(exclude_unset=True)


Number = Union[int, float]  # kept as written: a byte count stays an int, a ratio a float


class ClassScores(Record):
    precision: float
    recall: float
    f1: float
    support: int


class TestScores(Record):
    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    absent_classes: list[str] = []
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]


class ValScores(Record):
    accuracy: float


class Check(Record):
    used: Any  # bytes, milliseconds, or the dtype for the dtype check
    budget: Any
    margin: Optional[Number] = None
    margin_pct: Optional[float]
    fits: Optional[bool]  # None: a budget with no figure to judge it by (a latency nothing estimates)
    how: Optional[str] = None
    runtime_source: Optional[str] = None  # flash: where the runtime's own figures come from
    estimate: Optional[Number] = None  # ram: the graph-walk estimate, beside a measured figure
    range_ms: Optional[list[float]] = None  # latency: a calibrated Cortex-M estimate's range
    estimate_ms: Optional[float] = None


class LatencyCheck(Check):
    how: str


class Checks(Record):
    dtype: Check
    flash: Check
    ram: Check
    latency_ms: LatencyCheck


class Fit(Record):
    """The verdict for one exported file on the device."""

    device: Optional[str] = None
    dtype: str
    fits: Optional[bool]  # None: every checked budget is met but one could not be checked
    checks: Checks
    overflows: list[str]
    ram_counts_weights: Optional[bool] = None
    measured: Optional[list[str]] = None


class EarlyFit(Fit):
    """The untrained student's verdict before training, in the device's preferred format."""

    format: str


class Failure(Record):
    error: str


class Latency(Record):
    latency_p50_ms: float
    latency_p95_ms: float
    throughput_batch: int
    throughput_per_s: float
    throughput_seconds: Optional[float] = None  # absent in runs made before 2026-12-07
    threads: int
    runs: Optional[int] = None
    measured_on: Optional[str] = None
    meaningful: Optional[bool] = None


class Npu(Record):
    """Vela's compile of the tflm-int8 file for an Ethos-U NPU."""

    file: str
    file_bytes: int
    accelerator: str
    system_config: str
    memory_mode: str
    clock_hz: float
    sram_bytes: int
    flash_bytes: int
    inference_ms: float
    cycles: int
    cpu_operators: str
    how: str


class Format(Record):
    """One exported file, scored through its own runtime; the optional keys are those a backend measures."""

    runtime: str
    dtype: str
    file: str
    note: Optional[str] = None
    input_bits_refused: Optional[str] = None  # onnxruntime-int8: why a 16-bit input was refused
    file_bytes: int
    peak_activation_bytes: int
    input_bits: Optional[int] = None  # onnxruntime-int8: 16 when the input is quantized to 16 bits
    measured_ram_bytes: Optional[int] = None  # tflm: the arena it runs in
    arena_recorded_total_bytes: Optional[int] = None
    ram_how: Optional[str] = None
    files: Optional[list[str]] = None  # tflm: the C pair
    operators: Optional[list[str]] = None
    arena_margin_bytes: Optional[int] = None
    op_resolver: Optional[list[str]] = None
    npu: Optional[Npu] = None
    deliverable: Optional[str] = None  # an NPU's compiled file, which the firmware loads
    deliverable_bytes: Optional[int] = None
    test_accuracy: float
    val_accuracy: float
    max_abs_logit_diff: Optional[float] = None
    argmax_agreement: Optional[float] = None
    host_latency: Latency


class Deploy(Record):
    """Either an export that ran (formats and their fit) or the error that stopped it."""

    error: Optional[str] = None
    macs: Optional[int] = None
    formats: dict[str, Format] = {}  # keyed runtime-dtype: tflm-int8, onnxruntime-fp32, ...
    fit: dict[str, Fit] = {}
    failed: dict[str, str] = {}  # formats whose converter or runtime failed, with the reason
    val_accuracy_torch: Optional[float] = None
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

    @property
    def chosen(self) -> tuple[Format, Fit] | None:
        """The preferred format and its verdict, the pair reports judge by; None when the export failed."""
        return None if self.error is not None else (self.formats[self.preferred], self.fit[self.preferred])


class Rows(Record):
    labeled: int
    unlabeled: int


class Train(Record):
    best_epoch: int
    best_val_accuracy: float
    epochs: int
    seconds: Optional[float] = None
    history: list[dict[str, Any]]  # one row per epoch; its train_<term> keys are the method's loss terms
    rows_per_epoch: Optional[Rows] = None  # from version 4; the training rows of the last epoch


class Pruning(Record):
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    target_params: Optional[int]
    target_macs: Optional[int]
    importance: str


class ModelRecord(Record):
    """One model of the run: what it is, how it trained, how it scores, and its deployment."""

    role: str
    model: str
    args: dict[str, Any]
    params: int
    size_fp32_bytes: int
    checkpoint: Optional[str] = None
    source: Optional[str] = None
    train: Optional[Train] = None
    onnx: Optional[dict[str, Any]] = None  # an ONNX teacher: how its file was read (teachers/onnx.py)
    files: Optional[list[str]] = None  # an ensemble teacher's member files
    ensemble: Optional[dict[str, Any]] = None  # an ensemble teacher: weights, combine, members
    test: TestScores
    val: Optional[ValScores] = None
    pruning: Optional[Pruning] = None  # teacher_pruned
    distill: Optional[dict[str, Any]] = None  # student_kd, teacher_pruned: the distill config section
    deploy_skipped: Optional[str] = None  # an ONNX or ensemble teacher: why it was not exported
    deploy: Optional[Deploy] = None
    qat_reason: Optional[str] = None  # student_kd_qat
    ptq_int8_val_loss_points: Optional[float] = None


Models = create_model(  # keyed by roles.Role: the compared models always, the others when the run made them
    "Models", __base__=Record,
    **{role.value: (ModelRecord, ...) if role in COMPARED else (Optional[ModelRecord], None) for role in Role})


class Dataset(Record):
    name: str
    description: str
    input_shape: list[int]
    num_classes: int
    class_names: list[str]
    n_train: int
    n_val: int
    n_test: int
    n_unlabeled: int
    unlabeled: Optional[dict[str, Any]] = None  # where the pool came from (data/unlabeled.py)


class Device(Record):
    """The device profile the run was checked against, as `edgedistill devices` lists it."""

    name: str
    description: str
    flash_bytes: int
    ram_bytes: int
    cores: Optional[int] = None
    dtypes: Optional[list[str]] = None
    weights_in_ram: Optional[bool] = None
    latency_budget_ms: Optional[float] = None
    macs_per_second: Optional[dict[str, float]] = None
    core: Optional[str] = None
    clock_hz: Optional[float] = None
    macs_source: str
    measured_on_host: Optional[bool] = None
    formats: Optional[list[str]] = None
    runtime_flash_bytes: Optional[int] = None
    runtime_ram_bytes: Optional[int] = None
    runtime_source: Optional[str] = None
    npu: Optional[dict[str, Any]] = None


class Environment(Record):
    edgedistill: Optional[str] = None
    torch: str
    python: Optional[str] = None
    platform: str
    accelerator: str
    gpu: Optional[str]
    torch_threads: Optional[int] = None
    processes: Optional[int] = None


class Comparison(Record):
    kd_gain_over_scratch: float
    kd_accuracy_drop_vs_teacher: float
    scratch_accuracy_drop_vs_teacher: Optional[float] = None
    compression_ratio_params: float
    compression_ratio_size: Optional[float] = None
    f1_gain_over_scratch: Optional[float] = None


class SearchTrial(Record):
    """One student the search tried: refused for the device (fits false, overflows), failed (error), or trained."""
    number: int
    args: dict[str, Any]
    params: Optional[int] = None
    fits: Optional[bool] = None
    overflows: list[str] = []
    dtype: Optional[str] = None
    file_bytes: Optional[int] = None
    ram_bytes: Optional[int] = None
    latency_ms: Optional[float] = None
    error: Optional[str] = None
    val_accuracy: Optional[float] = None
    seconds: Optional[float] = None


class SearchBudget(Record):
    trials: int
    timeout_s: Optional[float] = None
    epochs_per_trial: int


class StudentSearch(Record):
    """student: auto: the family searched, the student chosen and every trial (pipeline/search.py); kept in the run
    folder as student_search.json, so --resume trains the same student."""
    family: str
    args: dict[str, Any]
    best_trial: int
    trials: list[SearchTrial]
    budget: SearchBudget
    seconds: float


class Metrics(Record):
    schema_version: int
    created: str
    name: str
    config: dict[str, Any]  # the resolved config, as config.yaml holds it
    environment: Environment
    dataset: Dataset
    device: Device
    early_fit_check: Union[EarlyFit, Failure, None] = None
    student_search: Optional[StudentSearch] = None
    models: Models
    comparison: Comparison

    def model(self, role: Role) -> ModelRecord | None:
        """The record of one role, None when the run did not make it."""
        return getattr(self.models, role.value)

    def records(self) -> dict[Role, ModelRecord]:
        """The models the run made, in the order of roles.Role."""
        return {role: rec for role in Role if (rec := self.model(role)) is not None}

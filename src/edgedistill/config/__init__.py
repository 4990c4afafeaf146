"""The experiment schema: YAML in, a validated object out, with `--set a.b=c` overrides.

Every section refuses unknown keys, so a typo costs seconds instead of a silently ignored setting.
"""
from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from edgedistill.config.distill import DistillConfig
from edgedistill.errors import UserError, first_line
from edgedistill.strict import Strict, format_validation_error  # noqa: F401  (re-exported)
from edgedistill.config.teacher import EXTERNAL, check_teacher_spec
from edgedistill.roles import CHOOSABLE, Side


class ConfigLoader(yaml.SafeLoader):
    """Safe YAML that refuses aliases (a few hundred bytes of nested anchors can expand past any memory) and
    duplicate keys (which would otherwise silently keep the last value)."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, f"alias *{event.anchor} is not allowed in a config; write the value out",
                event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}; keep one",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


class ConfigDumper(yaml.SafeDumper):
    """Writes every value out in full, so a saved config.yaml always reads back through ConfigLoader."""

    def ignore_aliases(self, data) -> bool:
        return True


SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's random_state take 0..2**32 - 1


def read_yaml(text: str):
    return yaml.load(text, Loader=ConfigLoader)


class AugmentConfig(Strict):
    """Batch-level image augmentation; `crop_padding` also shifts 1-D sequences."""

    crop_padding: int = Field(0, ge=0, le=16, description="pad by this many pixels, then crop back at random")
    hflip: bool = Field(False, description="random horizontal flip (images only)")
    resized_crop: tuple[float, float] | None = Field(
        None, description="camera images: a random crop covering [min, max] of the area (aspect 3/4..4/3), resized "
                          "back to the input size, e.g. [0.35, 1.0]")
    color_jitter: float = Field(0.0, ge=0.0, le=0.9, description="camera images: brightness, contrast and "
                                "saturation each scaled by a factor in [1 - j, 1 + j]")

    @field_validator("resized_crop")
    @classmethod
    def _crop_scale(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0.0 < v[0] <= v[1] <= 1.0:
            raise ValueError(f"must be [min, max] with 0 < min <= max <= 1, got {list(v)}")
        return v


class DataConfig(Strict):
    name: str = Field("mnist1d", description="registered dataset name, see `edgedistill datasets`")
    path: str | None = Field(None, description="file or folder for datasets read from disk")
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="share of the training split held out for validation")
    options: dict[str, Any] = Field(default_factory=dict, description="dataset-specific options, e.g. label_column")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    limit_train: int | None = Field(None, ge=10, description="keep a stratified subset of this many training samples")
    limit_test: int | None = Field(None, ge=10, description="keep a stratified subset of this many test samples")
    split_seed: int | None = Field(None, ge=0, le=SEED_MAX, description="seed of the validation split (default: "
                                   "the run's seed); --seeds holds it fixed so every seed shares one split")
    loader_workers: int | None = Field(None, ge=0, le=64, description="processes reading packed images ahead of "
                                       "training (image_folder); default: the cores one process leaves, up to 4")
    labeled_fraction: float | None = Field(
        None, gt=0.0, lt=1.0, description="keep the labels of this stratified share of the training rows (after "
                                          "validation), drawn by the split seed; the rest join the unlabelled pool")
    labeled_count: int | None = Field(None, ge=1, description="as labeled_fraction, as a number of training rows")
    unlabeled: str | None = Field(
        None, description="unlabelled samples for the distilled student: an .npz with an array x, a CSV of the "
                          "feature columns, a folder of images (no class folders) or a .txt of one text per line; "
                          "prepared as the labelled data; pixels as uint8 0..255 (digits: its integer levels 0..16) "
                          "or floats in [0, 1]")

    @model_validator(mode="after")
    def _one_label_share(self) -> "DataConfig":
        if self.labeled_fraction is not None and self.labeled_count is not None:
            raise ValueError("set labeled_fraction or labeled_count, not both")
        return self


class PseudoLabelConfig(Strict):
    """The teacher learns from the unlabelled pool as FixMatch does (Sohn et al., NeurIPS 2020): a pool row whose
    weakly augmented view the model itself predicts with confidence >= threshold is trained, on a strongly augmented
    view, toward that class. The strong view is the weak one with a random gain and offset and a cut-out patch,
    which stand in for RandAugment's ops on images and sequences alike."""

    threshold: float = Field(0.95, gt=0.0, lt=1.0, description="the confidence a pseudo-label needs (FixMatch: 0.95)")
    weight: float = Field(1.0, gt=0.0, description="the pool term's weight beside the labelled rows' cross-entropy")
    cutout: float = Field(0.5, ge=0.0, lt=1.0, description="the cut-out patch's side as a share of each spatial side "
                                                             "(FixMatch's Cutout: up to half)")
    jitter: float = Field(0.5, ge=0.0, lt=1.0, description="each strong view's inputs scaled by a gain drawn in "
                                                             "1 +- jitter and shifted by an offset in +- jitter (in "
                                                             "standardised units)")


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1, le=100_000)
    batch_size: int = Field(128, ge=1, description="global batch; under torchrun each process takes an equal share")
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    schedule: Literal["cosine", "onecycle", "constant"] = "onecycle"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast dtype; auto is bf16 on CUDA and fp32 on the CPU; fp16 (CUDA only) adds "
                            "loss scaling")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="a NaN/inf loss stops the run (keeping the last good checkpoint) or skips that batch")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap on batches per epoch, for smoke runs")
    pool_batch: int | None = Field(
        None, ge=1, description="unlabelled rows each step takes (all processes together), when a pool dwarfs the "
                                "labelled rows: the pool is then walked across epochs, not once per epoch, so the "
                                "control's long schedule costs its steps (FixMatch takes 7x the batch); default: "
                                "the whole pool every epoch")
    channels_last: bool = Field(
        False, description="train a model with 2-D convolutions in NHWC memory order, which oneDNN's and cuDNN's "
                           "bf16 kernels prefer; measure first (benchmarks/memory_format.py): on a 2-core Xeon with AMX "
                           "the Fashion-MNIST teacher and 97.6K student trained 1.32x and 1.33x faster, a 14.4K "
                           "student 0.57x")
    pseudo_label: PseudoLabelConfig | None = Field(
        None, description="teacher.train only: the teacher also learns from the unlabelled pool (data.unlabeled, "
                          "data.labeled_fraction or data.labeled_count) by FixMatch's confident pseudo-labels; "
                          "train.pool_batch sets the pool rows a step takes (FixMatch: 7x the batch)")
    keep: Literal["best", "last"] = Field(
        "best", description="weights kept: the best-on-validation epoch, or the last epoch when the validation "
                            "split is too small to choose on (a few samples tie at 100% early)")


class SearchConfig(Strict):
    """student: auto. Optuna searches a family's width and depth; only students that fit the device are trained."""

    family: Literal["convnet", "mobilenet", "mlp"] = "convnet"
    trials: int = Field(12, ge=1, description="Optuna trials at most (infeasible ones count, but train nothing)")
    timeout_s: float = Field(900.0, gt=0.0, description="wall-clock bound on the whole search")
    epochs: int = Field(2, ge=1, description="training epochs per trial, scored on validation")
    max_steps_per_epoch: int | None = Field(None, ge=1)


class ModelConfig(Strict):
    model: str = Field(..., description="registered model name, an import path 'pkg.module:factory', (student "
                                        "only) 'auto' for a searched student that fits the device, or (teacher "
                                        "only) 'onnx' or 'ensemble', see edgedistill/teachers")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model factory")
    checkpoint: str | None = Field(None, description="load weights from this file instead of training")
    train: TrainConfig = Field(default_factory=TrainConfig)
    search: SearchConfig = Field(default_factory=SearchConfig, description="used when model is 'auto'")


class PruneConfig(Strict):
    """Prune the trained teacher's channels to a budget; the result is fine-tuned by KD as one more student."""

    enabled: bool = False
    target_params: int | None = Field(None, ge=1)
    target_macs: int | None = Field(None, ge=1)
    norm: Literal[1, 2] = Field(2, description="channel importance: L1 or L2 magnitude")
    epochs: int | None = Field(None, ge=1, description="KD fine-tuning epochs after pruning (default: the student's)")

    @model_validator(mode="after")
    def _needs_a_budget(self) -> "PruneConfig":
        if self.enabled and self.target_params is None and self.target_macs is None:
            raise ValueError("set target_params or target_macs when pruning is enabled")
        return self


class CompressConfig(Strict):
    prune: PruneConfig = Field(default_factory=PruneConfig)


class DeployConfig(Strict):
    """Export, quantize, profile and fit-check every model after training."""

    enabled: bool = True
    required: bool = Field(
        True, description="the run is for a file the device loads: a student its runtime cannot run stops the run "
                          "before training, and a run that ends without that file exits 3; false trains anyway")
    formats: list[str] | None = Field(
        None, description="runtime-dtype files to produce (tflm-int8, executorch-int8, litert-fp32, "
                          "onnxruntime-int8, ...); the device profile's formats when unset")
    roles: list[Literal[tuple(r.value for r in CHOOSABLE)]] | None = Field(  # type: ignore[valid-type]
        None, description="the models to export (the QAT student follows student_kd); all when unset. Leave "
                          "out a teacher that will never ship, such as a 22M-parameter Transformer")
    every_seed: bool = Field(True, description="with --seeds N, export every seed's models; false exports the "
                             "first seed's only (the file to hand over) and scores the other seeds in PyTorch")
    quantize: bool = Field(True, description="produce the int8 formats (post-training static quantization)")
    calibration_samples: int = Field(512, ge=8, description="training samples used to calibrate int8 ranges")
    input_bits: Literal[8, 16] = Field(
        8, description="bits of the int8 model's input; 16 (the layers reading it run 16x8, like CMSIS-NN's s16 "
                       "kernels) keeps detail in spiky signals whose peaks stretch a one-byte range; only for "
                       "models whose input reaches a Conv or Linear")
    latency_runs: int = Field(100, ge=5, le=100_000, description="batch-1 runs timed for the latency percentiles; "
                              "batch throughput is timed for latency_runs/100 seconds, at most 1 s")
    qat: Literal["auto", "off", "always"] = Field(
        "auto", description="quantization-aware KD fine-tuning of the KD student; auto: when int8 PTQ loses too much")

    @field_validator("qat", mode="before")
    @classmethod
    def _unquoted_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads an unquoted off as false
    qat_threshold_points: float = Field(0.5, ge=0.0, description="auto QAT when PTQ loses more than this")
    qat_epochs: int = Field(3, ge=1)
    qat_lr_scale: float = Field(0.1, gt=0.0, le=1.0, description="QAT learning rate as a fraction of the student's")


class TrackingConfig(Strict):
    """Experiment tracking: each run (and a --seeds parent with one child per seed) logged where teams compare runs."""

    backends: list[Literal["mlflow", "tensorboard"]] = Field(
        default_factory=list, description="where to log (off when empty): mlflow, tensorboard (event files under "
                                          "the run folder's tensorboard/), or both; --track on the CLI")
    uri: str | None = Field(None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else MLflow's "
                                              "local store in the current folder (mlflow.db, artifacts in ./mlruns)")
    experiment: str | None = Field(None, description="MLflow experiment (created when missing); default: name")
    required: bool = Field(False, description="a tracker that cannot be reached stops the run before training, "
                                              "instead of one warning and an untracked run")

    @field_validator("backends", mode="before")
    @classmethod
    def _one_backend(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ExperimentConfig(Strict):
    name: str = Field("experiment", description="a label for the run, also its folder's name under runs/")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="0..2**32 - 1, the seeds numpy and scikit-learn accept")
    accelerator: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train: CUDA when present")
    deterministic: bool = False
    device: str = Field("host", description="edge device profile, see `edgedistill devices`")
    device_catalog: str | None = Field(None, description="your own YAML of device profiles (adds to the catalog)")
    latency_budget_ms: float | None = Field(None, gt=0, description="overrides the device profile's latency budget")
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: ModelConfig
    student: ModelConfig
    distill: DistillConfig = Field(default_factory=DistillConfig)
    compress: CompressConfig = Field(default_factory=CompressConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("name")
    @classmethod
    def _name_is_a_label(cls, value: str) -> str:
        if not re.fullmatch(r"[^/\\\x00-\x1f.][^/\\\x00-\x1f]{0,99}", value):
            raise ValueError("must be a label of at most 100 characters with no '/', '\\', control character or "
                             "leading dot, since it names the run's folder under runs/; use --out for a path")
        return value

    @field_validator(Side.STUDENT.value, mode="before")
    @classmethod
    def _auto_student(cls, value: Any) -> Any:
        return {"model": "auto"} if value == "auto" else value

    @model_validator(mode="after")
    def _student_is_trained(self) -> "ExperimentConfig":
        if self.teacher.model == "auto":
            raise ValueError("teacher.model: 'auto' searches students only; name a teacher model")
        if self.student.checkpoint is not None:
            raise ValueError("student.checkpoint is not supported: the student is what this run trains")
        if self.student.train.pseudo_label is not None:
            raise ValueError("student.train.pseudo_label: the students learn from the pool through the teacher, and "
                             "the scratch control from labels alone; set it under teacher.train")
        if self.teacher.train.pseudo_label is not None:
            self._check_self_taught_teacher()
        return self

    @property
    def split_seed(self) -> int:
        """The seed of the validation split: data.split_seed, or the run's seed when unset."""
        return self.seed if self.data.split_seed is None else self.data.split_seed

    def _check_self_taught_teacher(self) -> None:
        """teacher.train.pseudo_label needs a teacher this run trains, and a pool to learn from."""
        if self.teacher.checkpoint is not None or self.teacher.model in EXTERNAL:
            raise ValueError("teacher.train.pseudo_label: this teacher is loaded, not trained; remove "
                             "teacher.checkpoint or pseudo_label")
        d = self.data
        if d.labeled_fraction is None and d.labeled_count is None and d.unlabeled is None:
            raise ValueError("teacher.train.pseudo_label: there is no unlabelled pool to learn from; set "
                             "data.unlabeled, data.labeled_fraction or data.labeled_count")


DEFAULT_CONFIG = "default.yaml"


def packaged_config_text(name: str = DEFAULT_CONFIG) -> str:
    return resources.files("edgedistill").joinpath("configs", name).read_text()


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """Turn ["a.b=3", ...] into key paths and YAML-typed values."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value, e.g. --set teacher.train.epochs=5")
        key, raw = item.split("=", 1)
        if not all(part.strip() for part in key.split(".")):
            raise UserError(f"--set {item!r}: the key before '=' is empty or has an empty part; name it in full, "
                            "e.g. --set teacher.train.epochs=5")
        try:
            value = read_yaml(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        parsed.append((key.strip().split("."), value))
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for path, value in parse_overrides(overrides):
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {'.'.join(path)}: '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read YAML (or the packaged default when path is None), apply overrides, validate."""
    if path is None:
        source, text = f"packaged {DEFAULT_CONFIG}", packaged_config_text()
    else:
        p = Path(path)
        if p.is_dir():
            raise UserError(f"config file {str(p)!r} is a folder; pass the YAML file in it, or omit it for the default")
        if not p.is_file():
            raise UserError(f"config file {str(p)!r} not found; pass an existing YAML file or omit it for the default")
        try:
            source, text = str(p), p.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"config file {str(p)!r} cannot be read as text ({first_line(exc)})") from None
    try:
        raw = read_yaml(text) or {}
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{source}{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if "single document" in str(getattr(exc, "context", "")):
            raise UserError(f"{source}: a second YAML document starts{where} ('---'); a config is one document, "
                            "so remove the separator or move the second one to its own file") from None
        raise UserError(f"{source}: malformed YAML{where}; fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides or [])
    return validate_config(raw, source)


def validate_config(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise UserError(format_validation_error(err, source)) from None
    check_teacher_spec(cfg, source)
    return cfg


def resolve_config(config: "ExperimentConfig | dict | str | Path | None",
                   overrides: list[str] | None = None) -> ExperimentConfig:
    """Accept a config object, a plain dict, a YAML path, or None for the packaged default."""
    if config is None or isinstance(config, (str, Path)):
        return load_config(config, overrides)
    raw = config.model_dump(mode="json") if isinstance(config, ExperimentConfig) else copy.deepcopy(config)
    return validate_config(apply_overrides(raw, overrides or []), "config")


def config_to_yaml(cfg: ExperimentConfig) -> str:
    return yaml.dump(cfg.model_dump(mode="json"), Dumper=ConfigDumper, sort_keys=False)

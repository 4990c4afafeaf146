"""Everything checked before a run folder is created or replaced: the accelerator, the device, the data, the teacher
(loaded from its checkpoint when one is given), a prune dry run and the early fit verdict of the configured student.
A wrong input fails here in seconds, with nothing written."""
from __future__ import annotations

import copy
import os

import torch
import torch.nn as nn

from edgedistill import distributed
from edgedistill.checkpoint import load_weights, read_checkpoint
from edgedistill.compress import prune_to_budget
from edgedistill.config import ExperimentConfig
from edgedistill.data import DataSplits, load_dataset
from edgedistill.deploy import check_deploy, deploy_plan, get_device
from edgedistill.errors import UserError
from edgedistill.models.build import build_model
from edgedistill.models.evaluate import model_input
from edgedistill.pipeline.stages import check_method_setup, check_student
from edgedistill.pipeline.state import Run
from edgedistill.roles import Side
from edgedistill.teachers import build_external_teacher, is_external
from edgedistill.train.trainer import check_train_config


def resolve_accelerator(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("accelerator: 'cuda' was asked for but no CUDA device is visible; use 'auto' or 'cpu'")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def load_teacher(cfg: ExperimentConfig, data: DataSplits, accel: torch.device | None = None) -> nn.Module:
    """Build the teacher and, when a checkpoint is given, load it and check its weights and outputs are finite,
    before any folder is touched or any student trained. An ONNX or ensemble teacher is loaded and checked alike."""
    if is_external(cfg.teacher.model):
        return build_external_teacher(cfg.teacher, data, cfg.seed, accel)
    teacher = build_model(cfg.teacher, Side.TEACHER, data, cfg.seed)
    if cfg.teacher.checkpoint:
        path = cfg.teacher.checkpoint
        load_weights(teacher, read_checkpoint(path, "teacher.checkpoint"), path, "teacher.checkpoint")
        bad = next((name for name, t in teacher.state_dict().items()
                    if t.is_floating_point() and not torch.isfinite(t).all()), None)
        if bad:
            raise UserError(f"teacher.checkpoint: {path} holds NaN or inf in {bad!r}; it cannot teach. Use a "
                            "checkpoint saved before training diverged, or train the teacher here")
        with torch.no_grad():
            logits = teacher.eval()(model_input(data.x_train[:64]))
        if not torch.isfinite(logits).all():
            raise UserError(f"teacher.checkpoint: {path} gives NaN or inf logits on training samples; it cannot "
                            "teach. Check that it was trained on data prepared like this dataset")
    return teacher


def load_data(cfg: ExperimentConfig) -> DataSplits:
    """The configured dataset, its validation split carved with data.split_seed (the run's seed by default)."""
    d = cfg.data
    return load_dataset(d.name, d.path, d.val_fraction, cfg.split_seed, d.options, d.limit_train, d.limit_test,
                        d.labeled_fraction, d.labeled_count, d.unlabeled)


def check_augment(cfg: ExperimentConfig, data: DataSplits) -> None:
    """Camera augmentation needs images, and colour jitter their pixel statistics: refused now, not at step one."""
    aug = cfg.data.augment
    asked = [name for name, on in (("resized_crop", aug.resized_crop is not None),
                                   ("color_jitter", aug.color_jitter > 0)) if on]
    if asked and len(data.input_shape) != 3:
        raise UserError(f"data.augment.{asked[0]}: works on images (C, H, W), but {data.name!r} gives inputs of "
                        f"shape {data.input_shape}; remove it")
    if aug.color_jitter > 0 and data.pixel_stats is None:
        raise UserError(f"data.augment.color_jitter: {data.name!r} does not say how its pixels were standardised, "
                        "so they cannot be jittered in [0, 1]; remove it (image_folder and fashion_mnist have it)")


def check_self_teaching(cfg: ExperimentConfig, data: DataSplits) -> None:
    """A self-taught teacher's strong view scales and cuts out inputs: images and sequences only."""
    if cfg.teacher.train.pseudo_label is None:
        return
    if data.text or len(data.input_shape) < 2:
        kind = "token ids" if data.text else f"rows of shape {data.input_shape}"
        raise UserError(f"teacher.train.pseudo_label: its strong view cuts a patch out of an image or a sequence, "
                        f"but {data.name!r} gives {kind}; remove it")
    if data.n_pool == 0:
        raise UserError("teacher.train.pseudo_label: the unlabelled pool is empty; set data.unlabeled, "
                        "data.labeled_fraction or data.labeled_count")


def check_distill(cfg: ExperimentConfig, data: DataSplits) -> None:
    """What the methods cannot serve, known before any training from the processes and the data (each method's
    `refuse` says), and what mixing needs of the inputs."""
    why = cfg.distill.refusal(processes=distributed.world_size(), rows=len(data.x_train) + data.n_pool,
                              classes=data.num_classes)
    if why:
        raise UserError(why)
    mix = cfg.distill.mix.kind
    if mix != "none" and data.text:
        raise UserError(f"distill.mix.kind: {mix} blends inputs, but {data.name!r} gives token ids, which cannot be "
                        "blended; set it to none")
    if mix == "cutmix" and len(data.input_shape) < 2:
        raise UserError(f"distill.mix.kind: cutmix pastes a box of an image or a span of a sequence, but "
                        f"{data.name!r} gives inputs of shape {data.input_shape}; use mixup")


def prepare(cfg: ExperimentConfig) -> Run:
    """The device, the teacher, the student and their budgets as checks, before anything is written."""
    if cfg.deterministic:  # warn_only: some CUDA kernels have no deterministic version
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    accel = distributed.init_from_env(resolve_accelerator(cfg.accelerator))
    for train in [cfg.student.train] + ([] if cfg.teacher.checkpoint else [cfg.teacher.train]):
        check_train_config(train, accel)
    profile = get_device(cfg.device, cfg.device_catalog)
    if cfg.latency_budget_ms is not None:
        profile = profile.model_copy(update={"latency_budget_ms": cfg.latency_budget_ms})
    plan = deploy_plan(cfg.deploy, profile)
    if cfg.deploy.enabled:  # a runtime that is not installed is named now, with its pip command
        check_deploy(plan.formats, profile, plan.input_bits)
    data = load_data(cfg)
    check_augment(cfg, data)
    check_self_teaching(cfg, data)
    check_distill(cfg, data)
    teacher = load_teacher(cfg, data, accel)
    check_method_setup(cfg, data, teacher)
    pc = cfg.compress.prune
    if pc.enabled:  # a dry run on the untrained teacher: an unprunable teacher or budget fails now, not after training
        prune_to_budget(copy.deepcopy(teacher), data.input_shape, data.num_classes, pc.target_params, pc.target_macs,
                        pc.norm)
    run = Run(cfg, accel, profile, data, teacher, early_fit=None, plan=plan)
    if cfg.student.model != "auto":
        run.early_fit = check_student(run)
    return run

"""student: auto. Optuna (TPE) searches the width and depth of one student family for the best validation
accuracy, among students whose int8 (or the device's preferred format) file, peak RAM and latency fit the device.

Fit is checked before a trial trains anything (export and quantize the untrained model: size and RAM do not depend
on training), so an infeasible trial costs a second. Each feasible trial trains from scratch for a few epochs and
is scored on validation, never on the test set. The search is bounded by a number of trials and a wall-clock time.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import optuna
import torch

from edgedistill.config import ExperimentConfig, ModelConfig
from edgedistill.data import DataSplits
from edgedistill.deploy import DeployPlan, Unrunnable, early_fit_check
from edgedistill.distill.ce import CrossEntropy
from edgedistill.errors import UserError, first_line
from edgedistill.models import count_params
from edgedistill.progress import emit
from edgedistill.roles import Side
from edgedistill.train.trainer import Trainer, batch_source

log = logging.getLogger("edgedistill")


def convnet_space(trial: optuna.Trial) -> dict[str, Any]:
    stages = trial.suggest_int("stages", 1, 3)
    base = trial.suggest_int("base_channels", 4, 48, log=True)
    growth = trial.suggest_categorical("growth", [1.0, 1.5, 2.0])
    return {"channels": [max(1, round(base * growth**i)) for i in range(stages)],
            "convs_per_stage": trial.suggest_int("convs_per_stage", 1, 2),
            "head": trial.suggest_categorical("head", ["avg", "flatten"])}


def mobilenet_space(trial: optuna.Trial) -> dict[str, Any]:
    from edgedistill.models.mobile import DEFAULT_STAGES

    depth = trial.suggest_int("stages", 2, len(DEFAULT_STAGES))
    return {"width_mult": trial.suggest_float("width_mult", 0.25, 1.5, step=0.05),
            "expand": trial.suggest_categorical("expand", [2, 4, 6]),
            "stages": [list(s) for s in DEFAULT_STAGES[:depth]]}


def mlp_space(trial: optuna.Trial) -> dict[str, Any]:
    layers = trial.suggest_int("layers", 1, 3)
    width = trial.suggest_int("width", 16, 512, log=True)
    return {"hidden": [max(8, width // 2**i) for i in range(layers)]}


SPACES: dict[str, Callable[[optuna.Trial], dict[str, Any]]] = {
    "convnet": convnet_space, "mobilenet": mobilenet_space, "mlp": mlp_space}


def optimize(objective: Callable[[optuna.Trial], float], seed: int, trials: int, timeout_s: float) -> None:
    """A seeded TPE study, with Optuna's per-trial INFO lines held back and its verbosity restored after."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(objective, n_trials=trials, timeout=timeout_s)
    finally:
        optuna.logging.set_verbosity(verbosity)


def search_student(cfg: ExperimentConfig, data: DataSplits, plan: DeployPlan, accel: torch.device,
                   build: Callable[[ModelConfig, str, DataSplits, int], torch.nn.Module]) -> dict:
    """Run the search for the run's deploy plan; returns the chosen family and args, and every trial for the
    report."""
    sc, device = cfg.student.search, plan.device
    train = cfg.student.train.model_copy(update={"epochs": sc.epochs, "max_steps_per_epoch": sc.max_steps_per_epoch})
    trials: list[dict] = []

    def objective(trial: optuna.Trial) -> float:
        record = {"number": trial.number, "args": SPACES[sc.family](trial)}
        trials.append(record)
        try:
            return run_trial(record)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # one student that fails to build, export or train must not end the search
            why = str(exc) if isinstance(exc, Unrunnable) else first_line(exc)
            record |= {"fits": False, "overflows": [f"failed: {why}"], "error": why}
            emit("search_trial", **record)
            raise optuna.TrialPruned(record["error"]) from None

    def run_trial(record: dict) -> float:
        t0 = time.perf_counter()
        args = record["args"]
        model = build(ModelConfig(model=sc.family, args=args), Side.STUDENT, data, cfg.seed + 1)
        verdict = early_fit_check(model, data.input_shape, data.x_train[:64], device, list(plan.formats),
                                  plan.input_bits)
        checks = verdict["checks"]
        record |= {"params": count_params(model), "fits": verdict["fits"],
                   "overflows": verdict["overflows"], "dtype": verdict["dtype"],
                   "file_bytes": checks["flash"]["used"], "ram_bytes": checks["ram"]["used"],
                   "latency_ms": checks["latency_ms"]["used"]}
        if verdict["fits"] is False:  # None (a latency budget nothing can check) was warned about; it trains
            record["seconds"] = time.perf_counter() - t0
            emit("search_trial", **record)
            raise optuna.TrialPruned("does not fit the device")
        ce = CrossEntropy(train.label_smoothing)
        trainer = Trainer(train, ce, batch_source(ce, cfg.data.augment, stats=data.pixel_stats), accel, cfg.seed,
                          f"search trial {record['number']}", loader_workers=cfg.data.loader_workers)
        result = trainer.fit(model, data.x_train, data.y_train, data.x_val, data.y_val)
        record |= {"val_accuracy": result.best_val_accuracy, "seconds": time.perf_counter() - t0}
        emit("search_trial", **record)
        return result.best_val_accuracy

    t0 = time.perf_counter()
    optimize(objective, cfg.seed, sc.trials, sc.timeout_s)
    fitting = [t for t in trials if t.get("fits") is not False and "val_accuracy" in t]
    if not fitting:
        raise UserError(f"student: auto found no {sc.family} that fits device {device.name!r} in {len(trials)} "
                        f"trials ({'; '.join(trials[-1].get('overflows', []))}); try another student.search.family, "
                        "more trials, or a larger device")
    best = max(fitting, key=lambda t: t["val_accuracy"])
    log.warning("student: auto chose %s %s (validation %.4f, %d of %d trials fit %s)", sc.family, best["args"],
                best["val_accuracy"], len(fitting), len(trials), device.name)
    return {"family": sc.family, "args": best["args"], "best_trial": best["number"], "trials": trials,
            "budget": {"trials": sc.trials, "timeout_s": sc.timeout_s, "epochs_per_trial": sc.epochs},
            "seconds": time.perf_counter() - t0}

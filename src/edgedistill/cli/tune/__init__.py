"""`edgedistill tune CONFIG`: find the distillation recipe for the user's data, on validation, with Optuna.

A study folder holds the study (SQLite, unless --storage names a database), the one teacher every trial distils
from (trained under a lock by the first worker, loaded by the others), trials/<number>/ and tune.md. Each `tune`
process is one worker; several, on one machine or many (a shared database), run trials of one study until it holds
--trials finished ones, starting from the config's own recipe for each method. With --rescore K the best K trials
train again on more seeds and the best mean is chosen (rescore.py). The test split is not read until the chosen
recipe and the scratch control run over --seeds, with the noise verdict of `edgedistill run --seeds`.
"""
from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
from filelock import FileLock, Timeout

from edgedistill import distributed
from edgedistill.atomic import atomic_write_text
from edgedistill.cli.seeds import SeedsResult, check_seed_count, run_seeds
from edgedistill.cli.tune.folder import (CONFIRM_MARKER, check_folder, check_same_study, confirmed,
                                         confirmed_result, folder_study, make_folder, record_uid)
from edgedistill.cli.tune.report import study_summary, trial_line, trial_row, write_report
from edgedistill.cli.tune.rescore import Unit, agree_on_rule, check_rescore, chosen_mean, recorded_choice, rescored
from edgedistill.cli.tune.space import SearchSpace, recipe_config
from edgedistill.cli.tune.storage import open_storage, optuna_quiet, redacted, sqlite_url
from edgedistill.cli.tune.study import (check_teacher, fixed_config, open_study, requeue_interrupted,
                                        start_from_config, study_uids, teacher_elsewhere)
from edgedistill.cli.tune.trial import Trials, search_space, trial_folder
from edgedistill.cli.tune.worker import Worker
from edgedistill.config import ExperimentConfig, resolve_config, validate_config
from edgedistill.data import DataSplits
from edgedistill.errors import UserError
from edgedistill.pipeline.prepare import prepare
from edgedistill.pipeline.state import Trained
from edgedistill.pipeline.state import Run
from edgedistill.pipeline.training import obtain_teacher
from edgedistill.roles import Role, Side
from edgedistill.teachers import is_external
from edgedistill.tracking import children_of, config_params, open_tracking

log = logging.getLogger("edgedistill")
MAX_HEARTBEAT_S = 86_400  # a dead worker's trial is retried after 3 heartbeats; Python's waits end at ~2**33 s


@dataclass
class TuneResult:
    out_dir: Path
    summary: dict  # tune.json
    seeds: SeedsResult | None  # None with --seeds 0, or when another worker in the folder runs them
    ran: int  # trials this worker finished


def check_arguments(trials: int, seeds: int, timeout_s: float | None, heartbeat_s: int) -> None:
    if trials < 1:
        raise UserError(f"--trials {trials}: give the study's total number of trials, at least 1")
    if seeds == 1 or seeds < 0:
        raise UserError(f"--seeds {seeds}: give 0 (tune only) or at least 2 seeds for the noise verdict")
    if timeout_s is not None and not timeout_s > 0:  # nan too: no trial would ever start
        raise UserError(f"--timeout {timeout_s:g}: give a number of seconds above 0")
    if not 1 <= heartbeat_s <= MAX_HEARTBEAT_S:
        raise UserError(f"--heartbeat {heartbeat_s}: give 1 to {MAX_HEARTBEAT_S} seconds")


def check_config(cfg: ExperimentConfig) -> None:
    if cfg.student.model == "auto":
        raise UserError("student.model: tune searches the recipe for one student; choose it first (student: auto "
                        "in `edgedistill run` searches one) and set student.model and student.args")
    if distributed.world_size() > 1:
        raise UserError("tune: each `edgedistill tune` process is one worker of the study; start several of them "
                        "instead of torchrun")


def without_test(data: DataSplits) -> DataSplits:
    """The data as a trial sees it: the test split replaced by an empty one, so no choice can read it."""
    return replace(data, x_test=np.empty((0, *data.input_shape), np.float32), y_test=np.empty(0, np.int64))


def check_teacher_here(study: optuna.Study, out: Path, cfg: ExperimentConfig) -> None:
    """A worker in another folder than the one where the study's teacher was made must be given that teacher."""
    made_elsewhere = teacher_elsewhere(study)
    here = (out / "teacher.pt").exists() or cfg.teacher.checkpoint or is_external(cfg.teacher.model)
    if made_elsewhere and not here:
        raise UserError(f"teacher: the study's teacher was made at {made_elsewhere}; copy that teacher file here and "
                        "set teacher.checkpoint to it, or give every worker one --out on a shared disk")


def shared_teacher(run: Run, study: optuna.Study, say: Callable[[str], None]) -> Trained:
    """The study's teacher: trained under a lock by the first worker in this folder, loaded by the others (the
    training resumes when the worker that started it died), and checked against the one the study recorded."""
    out = run.run_dir
    check_teacher_here(study, out, run.cfg)
    lock = FileLock(str(out / ".teacher.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say("waiting for the teacher another worker in this folder is training")
        lock.acquire()
    try:
        trained = obtain_teacher(run)
    finally:
        lock.release()
    check_teacher(study, trained.model, f"{socket.gethostname()}:{(out / 'teacher.pt').resolve()}")
    return trained


def best_config(out: Path, base: dict, best: dict) -> ExperimentConfig:
    """The best trial's recipe, reading the study's teacher from the folder."""
    raw = recipe_config(base, best["method"], best["settings"])
    if not is_external(raw[Side.TEACHER]["model"]):
        raw[Side.TEACHER]["checkpoint"] = str(out / "teacher.pt")
    return validate_config(raw, f"trial {best['number']}")


def confirm(out: Path, base: dict, best: dict, n: int, progress: bool,
            say: Callable[[str], None]) -> SeedsResult | None:
    """The best recipe and the scratch control over n seeds in out/confirm, by one worker of the folder; reused
    when that recipe already ran."""
    lock = FileLock(str(out / ".confirm.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say("another worker in this folder is running the best recipe over seeds; tune.md has it when done")
        return None
    try:
        done = {"trial": best["number"], "seeds": n}
        result = confirmed_result(out, done)
        if result is None and (out / CONFIRM_MARKER).exists() and confirmed(out) is None:
            log.warning("%s or %s is damaged, so the best recipe runs over the seeds again", out / CONFIRM_MARKER,
                        out / "confirm" / "seeds.json")
        if result is None:
            (out / CONFIRM_MARKER).unlink(missing_ok=True)  # confirm/ is about to hold another recipe's seeds
            result = run_seeds(best_config(out, base, best), n, out_dir=out / "confirm", overwrite=True,
                               progress=progress)
            atomic_write_text(out / CONFIRM_MARKER, json.dumps(done))
        return result
    finally:
        lock.release()


def join_study(url: str, external: bool, out: Path, held: dict | None, cfg: ExperimentConfig, name: str,
               space: SearchSpace, fixed: dict, heartbeat_s: int, total: int,
               agree: Callable[[optuna.Study], None]) -> optuna.Study:
    """A database given by URL is reached, and the study checked against this worker (`agree`: the rule that
    chooses its best), before the folder is made; the default SQLite file lives in the folder. Workers in one
    folder open it in turn, so two never create its tables at once (nor queue the config's recipes twice)."""
    where = f"--study-name {name} in {redacted(url)}"
    study = None
    if external:
        storage = open_storage(url, heartbeat_s)
        check_same_study(out, held, study_uids(storage, name), where)
        study = open_study(storage, name, url, space, fixed, cfg.student.train.epochs)
        check_teacher_here(study, out, cfg)
        agree(study)
    make_folder(out, cfg, folder_study(name, url if external else None))
    with FileLock(str(out / ".study.lock")):
        if study is None:
            storage = open_storage(url, heartbeat_s)
            check_same_study(out, held, study_uids(storage, name), where)
            study = open_study(storage, name, url, space, fixed, cfg.student.train.epochs, "another --out")
            agree(study)
        record_uid(out, study)
        requeue_interrupted(study, lambda t: trial_folder(out, t))
        start_from_config(study, space, cfg.model_dump(mode="json"), total)
    return study


def run_trials(run: Run, study: optuna.Study, objective: Trials, total: int, timeout_s: float | None,
               heartbeat_s: int, storage: str, say: Callable[[str], None], settle: bool) -> tuple[dict, int]:
    """This worker's share of the study, from the study's one teacher; the study's summary (once the other
    workers' running trials end, when `settle`) and how many trials this worker finished."""
    with optuna_quiet():
        run.trained[Role.TEACHER] = shared_teacher(run, study, say)
        worker = Worker(study, objective, total, heartbeat_s, lambda t: say(trial_line(trial_row(t))))
        worker.run(timeout_s)
        if settle:
            worker.settle(say)
        summary = study_summary(study, total, storage, objective.space.describe(), objective.space.excluded,
                                run.cfg.student.train.epochs)
    return summary, len(worker.ran)


def best_metrics(summary: dict) -> dict[str, float]:
    """The study's tracked run: the best trial so far, its validation accuracy and, when rescored, its mean over
    the extra seeds."""
    best, r = summary["best"], summary.get("rescore")
    if not best:
        return {}
    mean = {"best_val_accuracy_mean": chosen_mean(r)} if r else {}
    return {"best_val_accuracy": best["val_accuracy"], "best_trial": best["number"]} | mean


def choose_on_seeds(summary: dict, study: optuna.Study, objective: Trials, top: int, n: int, out: Path,
                    heartbeat_s: int, say: Callable[[str], None]) -> dict:
    """The summary with its best chosen by `tune --rescore` (rescore.py): each unit is a trial's recipe at an
    extra seed, trained in rescore/<trial>-seed<s>/."""
    def at_seed(unit: Unit) -> float:
        row = next(r for r in summary["trials"] if r["number"] == unit.trial)
        return objective.at_seed(unit, row["method"], row["settings"], out / "rescore" / unit.folder)

    with optuna_quiet():
        return rescored(summary, study, top, n, objective.run.cfg.seed, at_seed, out, say, heartbeat_s)


def tune(config: ExperimentConfig | dict | str | Path | None = None, out_dir: str | Path | None = None,
         overrides: list[str] | None = None, trials: int = 20, timeout_s: float | None = None,
         storage: str | None = None, study_name: str | None = None, seeds: int = 3,
         methods: list[str] | None = None, heartbeat_s: int = 20, progress: bool = True,
         say: Callable[[str], None] = lambda line: None, mixes: list[str] | None = None, rescore: int = 0,
         rescore_seeds: int | None = None) -> TuneResult:
    """Run this worker's trials of the study; with rescore, the best few again on more seeds; then, with seeds
    >= 2, the chosen recipe against scratch."""
    check_arguments(trials, seeds, timeout_s, heartbeat_s)
    cfg = resolve_config(config, overrides)
    check_config(cfg)
    rescore_seeds = check_rescore(rescore, rescore_seeds, cfg.seed)
    if seeds:  # checked before the study, not after its trials
        check_seed_count(seeds, cfg.seed)
    out, name = Path(out_dir) if out_dir else Path("runs") / f"{cfg.name}-tune", study_name or cfg.name
    held = check_folder(out, folder_study(name, storage))
    tracking = open_tracking(cfg, out)  # tracking.required: the tracker is reached before the folder is made
    run = prepare(cfg)
    run.data = without_test(run.data)
    space = search_space(run, methods, mixes)
    url, base = storage or sqlite_url(out), cfg.model_dump(mode="json")
    with optuna_quiet():
        study = join_study(url, storage is not None, out, held, cfg, name, space,
                           fixed_config(cfg, space, run.data), heartbeat_s, trials,
                           lambda s: agree_on_rule(s, rescore, rescore_seeds, seeds > 0,
                                                   f"--study-name {name} in {redacted(url)}"))
    run.run_dir, run.progress, run.tracking = out, progress, tracking
    with tracking.running(out, config_params(cfg), resume=True):  # the workers of a folder share its tracked run
        objective = Trials(run, out, base, space)
        summary, ran = run_trials(run, study, objective, trials, timeout_s, heartbeat_s, redacted(url), say,
                                  settle=seeds > 0 or rescore > 0)
        if rescore and summary["best"]:
            summary = choose_on_seeds(summary, study, objective, rescore, rescore_seeds, out, heartbeat_s, say)
        else:  # a worker of trials only still reports the choice and the seeds other workers made
            summary = recorded_choice(summary, study, cfg.seed)
        summary["confirm"] = confirmed(out)
        write_report(out, summary)
        tracking.log_metrics(best_metrics(summary))
        result = None
        if seeds and summary["best"]:
            with children_of(tracking):  # the best recipe's --seeds run, under the study's tracked run
                result = confirm(out, base, summary["best"], seeds, progress, say)
    if result is not None:
        summary["confirm"] = confirmed(out)
        write_report(out, summary)
    return TuneResult(out, summary, result, ran)

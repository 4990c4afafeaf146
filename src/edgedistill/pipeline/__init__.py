"""The pipeline: prepare (every input checked, nothing written), then the stages in the run folder:
search -> teacher -> prune -> students -> evaluate -> deploy -> qat -> text_frontend -> report.

pipeline/stages.py lists them; each is a function of the typed Run in pipeline/state.py.

`__all__` is the API for scripts that go beyond one run (benchmarks/ uses it and nothing else of the pipeline):
- `run(config, ...)`: one whole run, as `edgedistill run` makes it;
- `prepare_in(cfg, folder)`: the checked `Run` in a folder of the caller's (`prepare_run_dir` makes one safely);
  then any stage of `stages` (`stages.teacher(run)`, `stages.search(run)`, ...) on it;
- `train_role(run, role, model, model_cfg, loss, ...)`: train one model as the stages do; `teacher_cache(run,
  method)`: the teacher-output bank; `evaluate_model`, `model_record`: its scores; `deploy_one`: its files on the
  run's device; `load_data(cfg)`: the splits alone; `Run`, `Trained`: what they take and give.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgedistill import distributed
from edgedistill.config import ExperimentConfig, resolve_config
from edgedistill.errors import UserError, environment_error
from edgedistill.pipeline import stages
from edgedistill.pipeline.deployment import deploy_one
from edgedistill.pipeline.inputs import absolute_paths, record_inputs, run_inputs, verify_inputs
from edgedistill.pipeline.prepare import load_data, prepare, resolve_accelerator
from edgedistill.pipeline.record import evaluate_model, model_record
from edgedistill.pipeline.stages import STAGES, Stage, run_stages
from edgedistill.pipeline.state import Run, Trained
from edgedistill.pipeline.training import STATE_DIR, obtain_teacher, teacher_cache, train_role, train_students
from edgedistill.quiet import library_log
from edgedistill.report import comparison_table
from edgedistill.pipeline.rundir import (check_out_dir, claim_existing, discard_unstarted, open_run_dir,
                                         prepare_run_dir, remove_stale_temp_files, resumed_config)
from edgedistill.roles import Side
from edgedistill.runlock import RunLock
from edgedistill.tracking import config_params, open_tracking


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    table: str


def prepare_in(cfg: ExperimentConfig, run_dir: Path, progress: bool = False) -> Run:
    """prepare() for a caller that owns its folder, such as a benchmark: the checked Run, working in run_dir."""
    state = prepare(cfg)
    state.run_dir, state.progress = Path(run_dir), progress
    state.run_dir.mkdir(parents=True, exist_ok=True)
    return state


def run(config: ExperimentConfig | dict | str | Path | None = None, out_dir: str | Path | None = None,
        overrides: list[str] | None = None, overwrite: bool = False, progress: bool = True,
        resume: bool = False) -> RunResult:
    """Run the whole experiment and write one folder: config.yaml, inputs.json, checkpoints, logs, metrics.json,
    report.md.

    Every input is checked before the folder is created (or an old run in it replaced), and fingerprinted; the
    folder is locked while the run works in it. With resume=True, out_dir is an unfinished run: its inputs must be
    as they were, finished models are loaded, the model in training continues from its last finished epoch.
    Under torchrun, every process trains and rank 0 alone writes files.
    """
    if resume and (out_dir is None or overwrite):
        raise UserError("--resume: name the run folder to continue, without --overwrite")
    lock = claim_existing(Path(out_dir) if out_dir is not None else None, "--resume" if resume else "--out")
    try:
        return _run_locked(config, out_dir, overrides, overwrite, progress, resume, lock)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(config: ExperimentConfig | dict | str | Path | None, out_dir: str | Path | None,
                overrides: list[str] | None, overwrite: bool, progress: bool, resume: bool,
                lock: RunLock | None) -> RunResult:
    """run() once the folder is held: an existing one by `lock`, a new one from when open_run_dir makes it."""
    if resume:
        cfg = resumed_config(Path(out_dir), config, overrides)
        verify_inputs(Path(out_dir), "--resume", ("data", Side.TEACHER, "device"))
        inputs, record = [], None
    else:
        cfg = absolute_paths(resolve_config(config, overrides))
        inputs = run_inputs(cfg, config if isinstance(config, (str, Path)) else None)
        record = record_inputs(inputs)
    state = prepare(cfg)
    tracking = open_tracking(cfg, Path(out_dir) if resume else None)
    if not resume and cfg.student.model == "auto":  # searched before the folder is made or an old run replaced
        if out_dir is not None:
            check_out_dir(Path(out_dir), overwrite, inputs)
        stages.find_student(state)
    if resume:
        state.run_dir = Path(out_dir)
    else:
        state.run_dir, lock = open_run_dir(cfg, out_dir, overwrite, lock, inputs, record)
    state.progress, state.tracking = progress, tracking
    if resume and distributed.is_main():
        remove_stale_temp_files(state.run_dir)
    try:
        with library_log(state.run_dir / "logs" / "libraries.log"), \
                tracking.running(state.run_dir, config_params(cfg), resume=resume):
            state = run_stages(state)
    except BaseException as exc:
        discarded = not resume and distributed.is_main() and discard_unstarted(state.run_dir, inputs)
        if isinstance(exc, OSError):
            then = ("nothing was kept" if discarded else f"the run in {state.run_dir} is unfinished; once fixed, "
                    f"continue it with `edgedistill run --resume {state.run_dir}`")
            raise UserError(f"{environment_error(exc)}; {then}") from exc
        raise
    finally:
        if lock is not None:
            lock.release()
    return RunResult(state.run_dir, state.metrics, comparison_table(state.metrics))


__all__ = ["Run", "RunResult", "Trained", "deploy_one", "evaluate_model", "load_data", "model_record", "prepare_in",
           "prepare_run_dir", "run", "stages", "teacher_cache", "train_role"]

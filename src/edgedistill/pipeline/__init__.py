"""The pipeline: prepare (every input checked, nothing written), then the stages in the run folder:
search -> teacher -> prune -> students -> evaluate -> deploy -> qat -> text_frontend -> report.

pipeline/stages.py lists them; each is a function of the typed Run in pipeline/state.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgedistill import distributed
from edgedistill.config import ExperimentConfig, resolve_config
from edgedistill.errors import UserError, environment_error
from edgedistill.pipeline.prepare import load_data, prepare, resolve_accelerator
from edgedistill.pipeline.record import evaluate_model, model_record
from edgedistill.pipeline.stages import STAGES, Stage, run_stages
from edgedistill.pipeline.state import Run, Trained
from edgedistill.pipeline.training import STATE_DIR, obtain_teacher, teacher_cache, train_role, train_students
from edgedistill.quiet import library_log
from edgedistill.report import comparison_table
from edgedistill.rundir import discard_unstarted, open_run_dir, remove_stale_temp_files, resumed_config
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
    """Run the whole experiment and write one folder: config.yaml, checkpoints, logs, metrics.json, report.md.

    Every input is checked before the folder is created (or an old run in it replaced). With resume=True, out_dir
    is an unfinished run: finished models are loaded, the model in training continues from its last finished epoch.
    Under torchrun, every process trains and rank 0 alone writes files.
    """
    if resume and (out_dir is None or overwrite):
        raise UserError("--resume: name the run folder to continue, without --overwrite")
    cfg = resumed_config(Path(out_dir), config, overrides) if resume else resolve_config(config, overrides)
    state = prepare(cfg)
    tracking = open_tracking(cfg, Path(out_dir) if resume else None)
    state.run_dir = Path(out_dir) if resume else open_run_dir(cfg, out_dir, overwrite)
    state.progress, state.tracking = progress, tracking
    if resume and distributed.is_main():
        remove_stale_temp_files(state.run_dir)
    try:
        with library_log(state.run_dir / "logs" / "libraries.log"), \
                tracking.running(state.run_dir, config_params(cfg), resume=resume):
            state = run_stages(state)
    except BaseException as exc:
        discarded = not resume and distributed.is_main() and discard_unstarted(state.run_dir)
        if isinstance(exc, OSError):
            then = ("nothing was kept" if discarded else f"the run in {state.run_dir} is unfinished; once fixed, "
                    f"continue it with `edgedistill run --resume {state.run_dir}`")
            raise UserError(f"{environment_error(exc)}; {then}") from exc
        raise
    return RunResult(state.run_dir, state.metrics, comparison_table(state.metrics))


__all__ = ["STAGES", "STATE_DIR", "Run", "RunResult", "Stage", "Trained", "evaluate_model", "load_data",
           "model_record", "obtain_teacher", "prepare", "prepare_in", "resolve_accelerator", "run", "run_stages", "teacher_cache",
           "train_role", "train_students"]

"""Experiment tracking: a run logged where ML engineers compare runs (MLflow, TensorBoard), off by default.

`open_tracking(cfg)` gives the run a `Tracking`: every configured tracker behind one object, fed by what the run
already records: the trainer's epoch rows (`Tracking.epochs(role)`, a trainer Callback), metrics.json and the
deliverable (`log_result`, from the report stage), and the --seeds summary (`log_seeds`). Each tracker is one
module with a `BACKEND` (tracking/mlflow.py, tracking/tensorboard.py), registered in `_registry()`.

A parent run with children (--seeds, a tuner's trials): `parent = open_tracking(cfg)`, `with parent.running(...)`,
then either `with children_of(parent): pipeline.run(...)` (each run opens its tracking as a child), or
`trial = parent.start_child(folder, name, params)`, its `log_metrics(...)`, then `trial.close("FINISHED")`.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from edgedistill import distributed
from edgedistill.atomic import read_json_object
from edgedistill.config import ExperimentConfig, TrackingConfig
from edgedistill.errors import UserError, first_line
from edgedistill.progress import Callback
from edgedistill.tracking import records

log = logging.getLogger(__name__)
SAVED = "tracking.json"  # in the run folder: the tracked run's id, so --resume continues that run
_parent: contextvars.ContextVar["Tracking | None"] = contextvars.ContextVar("edgedistill_tracking_parent",
                                                                           default=None)
_warned = threading.Lock()


class Tracker(Protocol):
    """One tracked run in one tool. Calls may be queued; a failure is reported through `report_failure`."""

    title: str  # the tool, for messages: "MLflow"
    where: str  # the URI or folder it writes to, named in every message about it
    failed: bool

    def start(self, run_dir: Path, run_name: str, resume: bool) -> None: ...

    def log_params(self, params: dict[str, records.Value]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None: ...

    def restore_curve(self, prefix: str, points: list[tuple[int, dict[str, float]]]) -> None:
        """After a resume: the curve under `prefix` holds exactly these points, however much of it was sent."""

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_artifacts(self, run_dir: Path, names: list[str]) -> None: ...

    def child(self) -> "Tracker":
        """A tracker for a run nested under this one (not started)."""

    def close(self, status: str) -> None: ...


@dataclass(frozen=True)
class Backend:
    name: str
    modules: tuple[str, ...]  # what must import for it to work
    # (config, experiment name, tracking.json) -> tracker; with tracking.required, a UserError unless reachable now
    open: Callable[[TrackingConfig, str, dict], Tracker]


def _registry() -> dict[str, Backend]:
    from edgedistill.tracking import mlflow, tensorboard

    return {b.name: b for b in (mlflow.BACKEND, tensorboard.BACKEND)}


def report_failure(tracker: Tracker, exc: BaseException) -> None:
    """One warning line naming the tracker and where it writes; after it, the run goes on without that tracker."""
    with _warned:
        if tracker.failed:
            return
        tracker.failed = True
    log.warning("tracking: %s at %s failed (%s); the run goes on without it", tracker.title, tracker.where,
                first_line(exc))


class Tracking:
    """The run's trackers as one. A tracker that fails warns once and is dropped: once training has started,
    tracking never stops a run."""

    def __init__(self, trackers: list[Tracker] | None = None):
        self.trackers = list(trackers or [])

    def __bool__(self) -> bool:
        return any(not t.failed for t in self.trackers)

    def _each(self, method: str, *args) -> None:
        for tracker in self.trackers:
            if tracker.failed:
                continue
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # noqa: BLE001 (a tracker's failure is reported, never raised)
                report_failure(tracker, exc)

    @contextlib.contextmanager
    def running(self, run_dir: Path, params: dict[str, records.Value], run_name: str | None = None,
                resume: bool = False) -> Iterator["Tracking"]:
        """A started tracked run (the one in run_dir/tracking.json on resume), ended FINISHED, FAILED or KILLED."""
        self.start(run_dir, params, run_name, resume)
        try:
            yield self
        except KeyboardInterrupt:
            self.close("KILLED")
            raise
        except BaseException:
            self.close("FAILED")
            raise
        self.close("FINISHED")

    def start(self, run_dir: Path, params: dict[str, records.Value], run_name: str | None = None,
              resume: bool = False) -> None:
        self._each("start", Path(run_dir), run_name or Path(run_dir).name, resume)
        self._each("log_params", params)

    def close(self, status: str) -> None:
        self._each("close", status)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self._each("log_metrics", metrics, step)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._each("set_tags", tags)

    def restore_curve(self, prefix: str, points: list[tuple[int, dict[str, float]]]) -> None:
        self._each("restore_curve", prefix, points)

    def epochs(self, role: str) -> Callback:
        """The trainer callback that sends each epoch's row as curve points under `role/`."""
        return EpochCurves(self, role)

    def log_result(self, metrics: dict, run_dir: Path) -> None:
        """A finished run: the test metrics of every role and deployed file, the fit verdict, and its files."""
        self.log_metrics(records.final_metrics(metrics))
        self.set_tags(records.fit_tags(metrics))
        self._each("log_artifacts", run_dir, records.artifact_files(metrics, run_dir))

    def log_seeds(self, summary: dict, out_dir: Path, files: list[str]) -> None:
        """The --seeds parent: mean ± std over the seeds, the paired gain and its noise verdict."""
        self.log_metrics(records.seeds_metrics(summary))
        self.set_tags(records.seeds_tags(summary))
        self._each("log_artifacts", out_dir, files)

    def children(self) -> "Tracking":
        """Trackers for a run nested under this one, in the same tools; started by their own `running`."""
        return Tracking([t.child() for t in self.trackers if not t.failed])

    def start_child(self, run_dir: Path, run_name: str, params: dict[str, records.Value]) -> "Tracking":
        """A started child run, e.g. one tuning trial: log to it, then `close("FINISHED")` (or "FAILED")."""
        child = self.children()
        child.start(run_dir, params, run_name)
        return child


class EpochCurves(Callback):
    """Curve points after each epoch's state is saved; on a resume, the restored history made whole."""

    def __init__(self, tracking: Tracking, role: str):
        self.tracking, self.role = tracking, role

    def on_start(self, history: list[dict]) -> None:
        if history:
            points = [(row["epoch"], records.epoch_metrics(self.role, row)) for row in history]
            self.tracking.restore_curve(self.role, points)

    def on_epoch(self, row: dict) -> None:
        self.tracking.log_metrics(records.epoch_metrics(self.role, row), step=row["epoch"])


def saved_tracking(run_dir: Path | None) -> dict:
    """tracking.json of a run folder being resumed, each tool's entry an object (empty when there is none or it
    cannot be read: the resumed run is then tracked as a new one)."""
    saved = read_json_object(run_dir / SAVED) if run_dir is not None else None
    return {tool: entry for tool, entry in (saved or {}).items() if isinstance(entry, dict)}


def open_tracking(cfg: ExperimentConfig, resume_dir: Path | None = None) -> Tracking:
    """The run's tracking (empty when off, and on every rank but 0 under torchrun); a child of the enclosing
    `children_of` parent. A tool that is not installed, or with tracking.required one that cannot be reached now,
    stops the run here, before anything is written."""
    tc = cfg.tracking
    if not tc.backends or not distributed.is_main():
        return Tracking()
    if (parent := _parent.get()) is not None:
        return parent.children()
    known = _registry()
    for name in tc.backends:
        missing = [m for m in known[name].modules if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(f"tracking.backends: {name} needs {missing[0]}, which is not installed; "
                            "pip install 'edgedistill[tracking]' or remove it")
    saved = saved_tracking(resume_dir)
    trackers = [known[name].open(tc, tc.experiment or cfg.name, saved) for name in dict.fromkeys(tc.backends)]
    return Tracking(trackers)


@contextlib.contextmanager
def children_of(parent: Tracking) -> Iterator[None]:
    """Within this block, each run opens its tracking as a child of `parent` (--seeds: one child per seed)."""
    token = _parent.set(parent)
    try:
        yield
    finally:
        _parent.reset(token)


def config_params(cfg: ExperimentConfig) -> dict[str, records.Value]:
    return records.config_params(cfg.model_dump(mode="json"))

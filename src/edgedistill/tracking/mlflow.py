"""MLflow: one MLflow run per run folder (a --seeds folder is the parent of its seeds' runs), in the experiment
named by tracking.experiment. Every call goes through an Outbox thread to the MLflow client, which runs in a process
of its own (edgedistill/mlflow_sender.py), so training never waits for the server nor shares its GIL with MLflow; the
run's id is kept in the run folder's tracking.json, so --resume continues the same MLflow run.

Where: tracking.uri, else MLFLOW_TRACKING_URI, else MLflow's own local store in the current folder (./mlflow.db,
artifacts under ./mlruns), which `mlflow ui` there opens. MLflow 3 refuses a plain ./mlruns file store unless the
user sets MLFLOW_ALLOW_FILE_STORE, which is theirs to set, not ours.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from edgedistill.atomic import atomic_write_text
from edgedistill.config import TrackingConfig
from edgedistill.errors import UserError, first_line
from edgedistill.mlflow_sender import Sender, take_sender
from edgedistill.tracking import SAVED, Backend, report_failure, saved_tracking
from edgedistill.tracking.outbox import Outbox

LOCAL_STORE = "mlflow.db"
SEND_EVERY_S = 5.0  # epoch points are sent together at most this often: one MLflow write an epoch cost the
# 2-core demo +18.5% wall time (benchmarks/tracking_overhead.py), most of it SQLite commits
DRAIN_TIMEOUT_S = 60.0  # at the end of a run, how long records may still take to send


NAMED_STORES = {"databricks", "databricks-uc", "uc"}  # tracking URIs that are names, not paths


def tracking_uri(tc: TrackingConfig, saved: dict) -> str:
    """The resumed run's own URI; else tracking.uri, MLFLOW_TRACKING_URI, or MLflow's local store here."""
    uri = saved.get("mlflow", {}).get("uri") or tc.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd() / LOCAL_STORE}"
    return absolute_store(uri)


def absolute_store(uri: str) -> str:
    """A local store given relative to the current folder (sqlite:///runs.db, file:./mlruns, ./mlruns) made
    absolute, as tracking.json keeps it: a --resume from another folder must reach the same store and run."""
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        return f"sqlite:///{os.path.abspath(path)}" if path and path != ":memory:" else uri
    if uri.startswith("file:"):
        path = uri.removeprefix("file:")
        return Path(os.path.abspath(os.path.expanduser(path))).as_uri() if path and not path.startswith("//") else uri
    if ":" in uri or uri in NAMED_STORES:  # http://, databricks://profile, postgresql://, ...
        return uri
    return os.path.abspath(os.path.expanduser(uri))


class Connection:
    """One MLflow sender process, its experiment and the thread that talks to it, shared by a parent run and its
    children. It is also what a failure is reported against: the tool, the URI, and one flag for every run on it."""

    title = "MLflow"

    def __init__(self, uri: str, experiment: str):
        self.where, self.experiment = uri, experiment
        self.failed = False
        self.sender: Sender | None = None
        self.experiment_id: str | None = None
        self.outbox: Outbox | None = None

    def connect(self) -> None:
        self.sender = self.sender or take_sender()
        self.experiment_id = self.sender.call("connect", uri=self.where, experiment=self.experiment)

    def start(self) -> None:
        """The thread, started with the first run, with the connection made first unless it already is; only then
        does the sender drop to the lowest CPU priority, so the run and its tracking.json exist early."""
        if self.outbox is not None:
            return
        self.outbox = Outbox(lambda exc: report_failure(self, exc))
        if self.experiment_id is None:
            self.outbox.put(self.connect)
        self.outbox.put(lambda: self.sender.call("lower_priority"))

    def put(self, call: Callable[[], Any]) -> None:
        self.outbox.put(call)

    def drain(self, timeout_s: float, last: bool) -> None:
        """Wait until everything queued is sent (the last run also stops the thread and ends the sender); records
        still unsent after timeout_s are reported and dropped."""
        sent = self.outbox.close(timeout_s) if last else self.outbox.wait(timeout_s)
        if not sent:
            self.outbox.fail(TimeoutError(f"records still unsent after {timeout_s:.0f} s"))
        if last and self.sender is not None:
            self.sender.close() if sent else self.sender.kill()


class MlflowRun:
    """One MLflow run. Its calls are queued on the connection's thread and made in order."""

    title = "MLflow"

    def __init__(self, conn: Connection, parent: "MlflowRun | None" = None):
        self.conn, self.parent, self.where = conn, parent, conn.where
        self.run_id: str | None = None
        self.unsent: list[tuple] = []  # metric points not yet queued, sent together by `_send_points`
        self.last_sent = 0.0

    @property
    def failed(self) -> bool:
        return self.conn.failed

    @failed.setter
    def failed(self, value: bool) -> None:
        self.conn.failed = value

    def start(self, run_dir: Path, run_name: str, resume: bool) -> None:
        saved = saved_tracking(run_dir).get("mlflow", {}) if resume else {}
        self.conn.start()
        self.conn.put(lambda: self._start(run_dir.resolve(), run_name, saved))

    def _call(self, op: str, **args: Any) -> None:
        """Queued: one request to the sender about this run, whose id is known by the time it is made."""
        self.conn.put(lambda: self.conn.sender.call(op, run_id=self.run_id, **args))

    def _start(self, run_dir: Path, run_name: str, saved: dict) -> None:
        sender = self.conn.sender
        if saved.get("run_id") and saved.get("uri") == self.where:
            self.run_id = saved["run_id"]
            sender.call("update_run", run_id=self.run_id, status="RUNNING")
            return
        tags = {"edgedistill.run_dir": str(run_dir)}
        if self.parent is not None and self.parent.run_id:
            tags["mlflow.parentRunId"] = self.parent.run_id
        self.run_id = sender.call("create_run", experiment_id=self.conn.experiment_id, run_name=run_name, tags=tags)
        record = {"uri": self.where, "experiment_id": self.conn.experiment_id, "run_id": self.run_id,
                  "parent_run_id": tags.get("mlflow.parentRunId")}
        atomic_write_text(run_dir / SAVED, json.dumps({"mlflow": record}, indent=2) + "\n")

    def log_params(self, params: dict) -> None:
        self._call("log_batch", metrics=[], params={k: str(v) for k, v in params.items()}, tags={})

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Held and sent with the points that follow for up to SEND_EVERY_S; `close` sends what is left."""
        now = time.time()
        self.unsent += [(k, v, int(now * 1000), step) for k, v in metrics.items()]
        if now - self.last_sent >= SEND_EVERY_S:
            self._send_points()

    def _send_points(self) -> None:
        points, self.unsent, self.last_sent = self.unsent, [], time.time()
        if points:
            self._call("log_batch", metrics=points, params={}, tags={})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._call("log_batch", metrics=[], params={}, tags=tags)

    def restore_curve(self, prefix: str, points: list[tuple[int, dict[str, float]]]) -> None:
        """Send the points the server lacks: those queued but lost when the run was killed."""
        def fill() -> None:
            key = next((k for _, m in points for k in m), None)
            if key is None:
                return
            sender = self.conn.sender
            logged = set(sender.call("logged_steps", run_id=self.run_id, key=key))
            stamp = int(time.time() * 1000)
            sender.call("log_batch", run_id=self.run_id, params={}, tags={},
                        metrics=[(k, v, stamp, step) for step, m in points if step not in logged for k, v in m.items()])

        self.conn.put(fill)

    def log_artifacts(self, run_dir: Path, names: list[str]) -> None:
        self._send_points()
        for name in names:
            folder = str(Path(name).parent)
            self._call("log_artifact", path=str(run_dir.resolve() / name), folder=None if folder == "." else folder)

    def child(self) -> "MlflowRun":
        return MlflowRun(self.conn, parent=self)

    def close(self, status: str) -> None:
        """End the run; the run that opened the connection also stops its thread once everything is sent."""
        if self.conn.outbox is None:
            return
        self._send_points()
        self._call("set_terminated", status=status)
        self.conn.drain(DRAIN_TIMEOUT_S, last=self.parent is None)


def open_run(tc: TrackingConfig, experiment: str, saved: dict) -> MlflowRun:
    """With tracking.required, connect now and stop the run if that fails; else connect from the thread."""
    conn = Connection(tracking_uri(tc, saved), experiment)
    if tc.required:
        try:
            conn.connect()
        except Exception as exc:  # noqa: BLE001 (whatever MLflow or the network raises, the user sees one line)
            if conn.sender is not None:
                conn.sender.close()
            raise UserError(f"tracking.required: MLflow at {conn.where} cannot be reached ({first_line(exc)}); "
                            "start it, fix tracking.uri (or MLFLOW_TRACKING_URI), or set tracking.required: false "
                            "to run untracked with a warning") from None
    return MlflowRun(conn)


BACKEND = Backend(name="mlflow", modules=("mlflow",), open=open_run)

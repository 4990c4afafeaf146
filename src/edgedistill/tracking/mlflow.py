"""MLflow: one MLflow run per run folder (a --seeds folder is the parent of its seeds' runs), in the experiment
named by tracking.experiment. Every call goes through an Outbox thread, so training never waits for the server; its
id is kept in the run folder's tracking.json, so --resume continues the same MLflow run.

Where: tracking.uri, else MLFLOW_TRACKING_URI, else MLflow's own local store in the current folder (./mlflow.db,
artifacts under ./mlruns), which `mlflow ui` there opens. MLflow 3 refuses a plain ./mlruns file store unless the
user sets MLFLOW_ALLOW_FILE_STORE, which is theirs to set, not ours.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from edgedistill.atomic import atomic_write_text
from edgedistill.config import TrackingConfig
from edgedistill.errors import UserError, first_line
from edgedistill.tracking import SAVED, Backend, report_failure, saved_tracking
from edgedistill.tracking.outbox import Outbox, yield_cpu_to_training

LOCAL_STORE = "mlflow.db"
PROBE_TIMEOUT_S = 15.0  # an HTTP server that does not answer in this long counts as unreachable (a local
# server on a machine at load 16 took over 5 s to serve its first page)
SEND_EVERY_S = 5.0  # epoch points are sent together at most this often: one MLflow write an epoch cost the
# 2-core demo +18.5% wall time (benchmarks/tracking_overhead.py), most of it SQLite commits
BATCH_METRICS = 1000  # MLflow's limit on the metrics of one log_batch call
DRAIN_TIMEOUT_S = 60.0  # at the end of a run, how long records may still take to send


def tracking_uri(tc: TrackingConfig, saved: dict) -> str:
    """The resumed run's own URI; else tracking.uri, MLFLOW_TRACKING_URI, or MLflow's local store here."""
    uri = saved.get("mlflow", {}).get("uri") or tc.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd() / LOCAL_STORE}"
    path = uri.removeprefix("sqlite:///")
    return f"sqlite:///{Path(path).absolute()}" if uri.startswith("sqlite:///") and path else uri


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's own INFO lines (database set-up, 'View run ... at') stay off the terminal, inside this block only."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def probe(uri: str) -> None:
    """An HTTP tracking server that does not answer fails in seconds here, not after MLflow's minutes of retries.
    Any answer counts as reachable, a TLS handshake MLflow is configured to accept included."""
    if urlsplit(uri).scheme in ("http", "https"):
        import requests

        with contextlib.suppress(requests.exceptions.SSLError):
            requests.get(uri, timeout=PROBE_TIMEOUT_S)


class Connection:
    """One MLflow client, its experiment and the thread that talks to it, shared by a parent run and its children.
    It is also what a failure is reported against: the tool, the URI, and one flag for every run on it."""

    title = "MLflow"

    def __init__(self, uri: str, experiment: str):
        self.where, self.experiment = uri, experiment
        self.failed = False
        self.client: Any = None
        self.experiment_id: str | None = None
        self.outbox: Outbox | None = None

    def connect(self) -> None:
        probe(self.where)
        from mlflow import MlflowClient  # imported first: the import sets MLflow's own log levels

        with quiet_mlflow():
            client = MlflowClient(tracking_uri=self.where)
            found = client.get_experiment_by_name(self.experiment)
            self.experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        self.client = client

    def start(self) -> None:
        """The thread, started with the first run, with the connection made first on it unless it already is; only
        then does it drop to the lowest CPU priority, so the run and its tracking.json exist early."""
        if self.outbox is not None:
            return
        self.outbox = Outbox(lambda exc: report_failure(self, exc))
        if self.client is None:
            self.outbox.put(self.connect)
        self.outbox.put(yield_cpu_to_training)

    def send(self, call: Callable[[], Any]) -> None:
        def quietly() -> Any:
            with quiet_mlflow():
                return call()

        self.outbox.put(quietly)


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
        self.conn.send(lambda: self._start(run_dir.resolve(), run_name, saved))

    def _start(self, run_dir: Path, run_name: str, saved: dict) -> None:
        client = self.conn.client
        if saved.get("run_id") and saved.get("uri") == self.where:
            self.run_id = saved["run_id"]
            client.update_run(self.run_id, status="RUNNING")
            return
        tags = {"edgedistill.run_dir": str(run_dir)}
        if self.parent is not None and self.parent.run_id:
            tags["mlflow.parentRunId"] = self.parent.run_id
        self.run_id = client.create_run(self.conn.experiment_id, run_name=run_name, tags=tags).info.run_id
        record = {"uri": self.where, "experiment_id": self.conn.experiment_id, "run_id": self.run_id,
                  "parent_run_id": tags.get("mlflow.parentRunId")}
        atomic_write_text(run_dir / SAVED, json.dumps({"mlflow": record}, indent=2) + "\n")

    def log_params(self, params: dict) -> None:
        self.conn.send(lambda: self._batch(params=params))

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Held and sent with the points that follow for up to SEND_EVERY_S; `close` sends what is left."""
        now = time.time()
        self.unsent += [(k, v, int(now * 1000), step) for k, v in metrics.items()]
        if now - self.last_sent >= SEND_EVERY_S:
            self._send_points()

    def _send_points(self) -> None:
        points, self.unsent, self.last_sent = self.unsent, [], time.time()
        if points:
            self.conn.send(lambda: self._batch(metrics=points))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.conn.send(lambda: self._batch(tags=tags))

    def _batch(self, metrics: list[tuple] = (), params: dict | None = None, tags: dict | None = None) -> None:
        """One log_batch call, or several where the metrics pass MLflow's 1,000 a call."""
        from mlflow.entities import Metric, Param, RunTag

        chunks = [metrics[i:i + BATCH_METRICS] for i in range(0, len(metrics), BATCH_METRICS)] or [[]]
        for i, chunk in enumerate(chunks):
            self.conn.client.log_batch(self.run_id, metrics=[Metric(*m) for m in chunk],
                                       params=[Param(k, str(v)) for k, v in (params or {}).items()] if i == 0 else [],
                                       tags=[RunTag(k, v) for k, v in (tags or {}).items()] if i == 0 else [])

    def restore_curve(self, prefix: str, points: list[tuple[int, dict[str, float]]]) -> None:
        """Send the points the server lacks: those queued but lost when the run was killed."""
        def fill() -> None:
            key = next((k for _, m in points for k in m), None)
            if key is None:
                return
            logged = {m.step for m in self.conn.client.get_metric_history(self.run_id, key)}
            stamp = int(time.time() * 1000)
            self._batch(metrics=[(k, v, stamp, step) for step, m in points if step not in logged
                                 for k, v in m.items()])

        self.conn.send(fill)

    def log_artifacts(self, run_dir: Path, names: list[str]) -> None:
        self._send_points()
        files = [(run_dir.resolve() / name, str(Path(name).parent)) for name in names]
        for path, folder in files:
            self.conn.send(lambda p=path, f=folder: self.conn.client.log_artifact(
                self.run_id, str(p), None if f == "." else f))

    def child(self) -> "MlflowRun":
        return MlflowRun(self.conn, parent=self)

    def close(self, status: str) -> None:
        """End the run; the run that opened the connection also stops its thread once everything is sent."""
        if self.conn.outbox is None:
            return
        self._send_points()
        self.conn.send(lambda: self.conn.client.set_terminated(self.run_id, status))
        outbox = self.conn.outbox
        sent = outbox.wait(DRAIN_TIMEOUT_S) if self.parent is not None else outbox.close(DRAIN_TIMEOUT_S)
        if not sent:
            outbox.fail(TimeoutError(f"records still unsent after {DRAIN_TIMEOUT_S:.0f} s"))


def open_run(tc: TrackingConfig, experiment: str, saved: dict) -> MlflowRun:
    """With tracking.required, connect now and stop the run if that fails; else connect on the thread."""
    conn = Connection(tracking_uri(tc, saved), experiment)
    if tc.required:
        try:
            conn.connect()
        except Exception as exc:  # noqa: BLE001 (whatever MLflow or the network raises, the user sees one line)
            raise UserError(f"tracking.required: MLflow at {conn.where} cannot be reached ({first_line(exc)}); "
                            "start it, fix tracking.uri (or MLFLOW_TRACKING_URI), or set tracking.required: false "
                            "to run untracked with a warning") from None
    return MlflowRun(conn)


BACKEND = Backend(name="mlflow", modules=("mlflow",), open=open_run)

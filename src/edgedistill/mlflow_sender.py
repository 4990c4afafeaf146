"""The MLflow client in a process of its own, started by the CLI or tracking/mlflow.py: MLflow's import (about
1.2 s), its database set-up (about 1.7 s on a new store) and its writes run on a core training leaves idle, never
under the training process's GIL. On a thread of the run they cost the 2-core demo +19.3% of its wall time, best
run against best run (benchmarks/tracking_overhead.py, 2026-12-05).

Requests come one JSON line at a time on stdin and each gets one JSON line on stdout: {"result": ...} or
{"error": "its first line"}. The process ends when stdin closes, so it never outlives the run that started it.
It imports nothing of edgedistill but errors.py: the package's tracking layer pulls in torch. The run's side is
`Sender`; `start_sender()`, called before the run imports torch, has MLflow imported by the time it connects.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from typing import Any, Callable
from urllib.parse import urlsplit

from edgedistill.errors import first_line

PROBE_TIMEOUT_S = 15.0  # an HTTP server that does not answer in this long counts as unreachable (a local
# server on a machine at load 16 took over 5 s to serve its first page)
BATCH_METRICS = 1000  # MLflow's limit on the metrics of one log_batch call


class Sender:
    """The run's side: the MLflow client's process, one request at a time, answered in order."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "edgedistill.mlflow_sender"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def call(self, op: str, **args: Any) -> Any:
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (OSError, ValueError):  # the process ended, or was closed
            line = ""
        if not line:
            raise RuntimeError(f"MLflow's sender process ended (exit code {self.proc.poll()})")
        reply = json.loads(line)
        if "error" in reply:  # under the name the sender caught, so the run's warning reads as if MLflow ran here
            raise type(reply["type"], (RuntimeError,), {})(reply["error"])
        return reply["result"]

    def close(self) -> None:
        """Its input closed, it ends by itself once the request it is on is answered; nothing waits for that (its
        interpreter takes about a second to shut MLflow down)."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


_started: Sender | None = None  # started early by start_sender, for the run's first MLflow connection


def start_sender() -> None:
    """Start the sender now, before the run imports torch, so that it imports MLflow (about 1.2 s) on a core the
    run leaves idle meanwhile. It writes nothing until the run's tracking connects through it."""
    global _started
    if _started is None:
        _started = Sender()


def take_sender() -> Sender:
    """The sender started early, if any (once), else a new one."""
    global _started
    sender, _started = _started or Sender(), None
    return sender


def probe(uri: str) -> None:
    """An HTTP tracking server that does not answer fails in seconds here, not after MLflow's minutes of retries.
    Any answer counts as reachable, a TLS handshake MLflow is configured to accept included."""
    if urlsplit(uri).scheme in ("http", "https"):
        import requests

        with contextlib.suppress(requests.exceptions.SSLError):
            requests.get(uri, timeout=PROBE_TIMEOUT_S)


class Client:
    """The requests this process serves, each one MLflow call or a few."""

    def __init__(self) -> None:
        self.client: Any = None

    def connect(self, uri: str, experiment: str) -> str:
        probe(uri)
        from mlflow import MlflowClient  # imported first: the import sets MLflow's own log levels

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines ("Creating initial ... tables")
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        return found.experiment_id if found else self.client.create_experiment(experiment)

    def lower_priority(self) -> None:
        """After the set-up: the lowest CPU priority, so the steady small writes run on what training leaves idle."""
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, 0, 19)

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        return self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id

    def update_run(self, run_id: str, status: str) -> None:
        self.client.update_run(run_id, status=status)

    def log_batch(self, run_id: str, metrics: list[list], params: dict[str, str], tags: dict[str, str]) -> None:
        """One log_batch call, or several where the metrics pass MLflow's 1,000 a call."""
        from mlflow.entities import Metric, Param, RunTag

        chunks = [metrics[i:i + BATCH_METRICS] for i in range(0, len(metrics), BATCH_METRICS)] or [[]]
        for i, chunk in enumerate(chunks):
            self.client.log_batch(run_id, metrics=[Metric(*m) for m in chunk],
                                  params=[Param(k, v) for k, v in params.items()] if i == 0 else [],
                                  tags=[RunTag(k, v) for k, v in tags.items()] if i == 0 else [])

    def logged_steps(self, run_id: str, key: str) -> list[int]:
        return [m.step for m in self.client.get_metric_history(run_id, key)]

    def log_artifact(self, run_id: str, path: str, folder: str | None) -> None:
        self.client.log_artifact(run_id, path, folder)

    def set_terminated(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)


def serve(requests: Any, replies: Any) -> None:
    """Answer each request line in order until the input closes."""
    client = Client()
    ops: dict[str, Callable[..., Any]] = {name: getattr(client, name) for name in dir(Client)
                                          if not name.startswith("_")}
    for line in requests:
        request = json.loads(line)
        try:
            reply = {"result": ops[request.pop("op")](**request)}
        except Exception as exc:  # noqa: BLE001 (the run reports it once and goes on untracked)
            reply = {"error": first_line(exc).removeprefix(f"{type(exc).__name__}: "), "type": type(exc).__name__}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main() -> None:
    """MLflow imported at once, before the first request; replies go to the original stdout, and anything MLflow or
    its libraries print to stderr instead."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    with contextlib.suppress(ImportError):  # not installed: the run says so before it connects
        import mlflow  # noqa: F401
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()

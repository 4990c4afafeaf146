"""run_cli's fork server: a fresh process per CLI call without a fresh interpreter's imports.

About 200 tests run the CLI, and each start imported torch, scikit-learn and ONNX again: 2.5 s before a config
was read, about 7 s before a tiny run trained. This server, one per pytest process, imports them once and forks a
child per call; the child runs `python -m edgedistill ARGS` as the interpreter would (its own working folder,
environment, stdin from /dev/null, stdout and stderr to files, exit handlers, exit code), so a test still reads what
a user's shell would see. Imports read the environment (OMP_NUM_THREADS at libgomp's load, for one), so a call
whose environment differs from the server's runs in a fresh interpreter instead (conftest.run_cli).

Preloaded: only modules that print nothing when imported; the converters for microcontrollers (litert-torch,
TFLite Micro) log to stderr on import, and a user's run shows those lines, so the child imports them itself.
Modules a run imports on first use are preloaded too (torch._dynamo, which the first optimizer imports; pyplot; the
ONNX exporter): with them a forked tiny run takes about 2.4 s instead of 5 s (one thread, 2026-12-08).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

PRELOAD = ("torch", "numpy", "pydantic", "rich", "filelock", "scipy.stats", "sklearn.metrics",
           "sklearn.model_selection", "matplotlib", "onnx", "onnxruntime", "edgedistill.cli",
           # imported on first use: torch._dynamo by the first optimizer, the rest by the report and the ONNX export
           "torch._dynamo", "edgedistill.pipeline", "edgedistill.report.html", "torch.onnx", "torch.export",
           "onnxscript", "onnxruntime.quantization", "networkx")
VOLATILE = ("PYTEST_CURRENT_TEST",)  # pytest sets it per test; the child gets the caller's value


def comparable(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in VOLATILE}


def exit_code(code: object) -> int:
    """What the interpreter makes of `raise SystemExit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def run_main() -> int:
    """`python -m edgedistill` from here: __main__, then the threads and exit handlers a real exit waits for."""
    import atexit
    import runpy

    try:
        runpy.run_module("edgedistill", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = exit_code(stop.code)
    except BaseException:  # an uncaught error: the interpreter prints its traceback and exits 1
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


def child(request: dict, channels: tuple[int, int]) -> None:
    """The forked process: the request's folder, environment, arguments and output files; never returns."""
    code = 1
    try:
        for fd in channels:
            os.close(fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["edgedistill", *request["args"]]
        sys.path[0] = request["cwd"]  # `python -m` puts the working folder first
        code = run_main()
    finally:
        os._exit(code)


def serve() -> None:
    """Read one JSON request per line on stdin; answer the child's pid, then its exit code (negative: a signal)."""
    requests, replies = os.dup(0), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)  # anything a preloaded module prints stays off the reply channel
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    sys.stdout.flush()
    reader = os.fdopen(requests, "r")
    os.write(replies, b"ready\n")
    for line in reader:
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(json.loads(line), (requests, replies))
        os.write(replies, f"{pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        os.write(replies, f"{os.waitstatus_to_exitcode(status)}\n".encode())


class CliServer:
    """The pytest process's side: start the server once, then one call at a time."""

    def __init__(self, env: dict[str, str]):
        self.env, self.pending, self.busy = env, b"", threading.Lock()
        self.folder = Path(tempfile.mkdtemp(prefix="edgedistill-cli-server-"))
        self.log = (self.folder / "server.log").open("w")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env, bufsize=0)
        if self.reply(600) != "ready":
            raise RuntimeError(f"the CLI fork server did not start: {(self.folder / 'server.log').read_text()}")

    def reply(self, timeout: float) -> str | None:
        """The server's next line, or None when `timeout` seconds pass first."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            if not select.select([fd], [], [], timeout)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the CLI fork server stopped: {(self.folder / 'server.log').read_text()}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def serves(self, env: dict[str, str]) -> bool:
        return self.proc.poll() is None and comparable(env) == comparable(self.env)

    def run(self, args: list[str], cwd: Path | None, env: dict[str, str], timeout: float) -> tuple[int, str, str]:
        """Exit code, stdout and stderr of one call, decoded as subprocess.run(text=True) decodes them."""
        out, err = self.folder / "stdout", self.folder / "stderr"
        request = {"args": list(args), "cwd": str(Path(cwd or os.getcwd()).resolve()), "env": env,
                   "stdout": str(out), "stderr": str(err)}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        pid = int(self.reply(60))
        code = self.reply(timeout)
        if code is None:
            os.kill(pid, signal.SIGKILL)
            self.reply(60)
            raise subprocess.TimeoutExpired(args, timeout)
        return int(code), out.read_text(), err.read_text()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.log.close()
        for path in self.folder.iterdir():
            path.unlink()
        self.folder.rmdir()


if __name__ == "__main__":
    serve()

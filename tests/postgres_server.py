"""A throwaway PostgreSQL server from Debian's `postgresql` package, on a free localhost port in a temporary
folder, for the `edgedistill tune --storage` tests and benchmarks/tune_workers.py.

PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the package's `postgres` user (or `nobody`).
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

USER, PASSWORD = "edgedistill", "tune-secret"


def server_bin() -> Path | None:
    """The newest installed server's bin folder (initdb, pg_ctl), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def run_as() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root with neither a 'postgres' nor a 'nobody' account to run PostgreSQL as")


def why_unavailable() -> str | None:
    """Why a server cannot be started here, or None."""
    if server_bin() is None:
        return "PostgreSQL server absent: apt-get install postgresql (.ci/run installs it)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg absent: pip install 'edgedistill[tune]'"
    try:
        run_as()
    except RuntimeError as exc:
        return str(exc)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], account: pwd.struct_passwd | None) -> None:
    ids = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": tempfile.gettempdir()}
    subprocess.run(args, check=True, capture_output=True, text=True, env=env, timeout=120, **ids)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server and yield its URL (user edgedistill, password auth, database postgres); stop and remove it
    afterwards."""
    bin_dir, account = server_bin(), run_as()
    root = Path(tempfile.mkdtemp(prefix="edgedistill-pg-"))
    data, port = root / "data", free_port()
    try:
        (root / "pw").write_text(PASSWORD)
        if account:
            for p in (root, root / "pw"):
                os.chown(p, account.pw_uid, account.pw_gid)
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256",
              f"--pwfile={root / 'pw'}", "--locale=C", "-E", "UTF8"], account)
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
              "-o", options, "start"], account)
        yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], account)
        shutil.rmtree(root, ignore_errors=True)

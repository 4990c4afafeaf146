"""A run folder belongs to one live process: `run`, `--seeds`, `--resume` and `export` hold an flock on
RUN_DIR/.edgedistill-lock while they work in it, so a second command on the folder stops in one line naming the
first one's PID instead of deleting or mixing into a live run. The OS releases an flock when its process ends,
however it ends (SIGKILL, out of memory, a reboot), so a stale lock file never blocks a resume. Under torchrun
rank 0 holds it: the other ranks write nothing.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from edgedistill.distributed import is_main_process_env
from edgedistill.errors import UserError

LOCK = ".edgedistill-lock"
log = logging.getLogger("edgedistill")
_HELD: set[int] = set()  # descriptors this process locks; a forked child (a DataLoader or packing worker) closes
# its copies, so a worker outliving a killed parent cannot keep the folder locked


def _close_in_child() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


def hold(path: Path) -> int | None:
    """An exclusive flock on a file or folder (a temporary pack being written), or None when another live process
    holds it or the filesystem has no locks; let_go() releases it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    _HELD.add(fd)
    return fd


def let_go(fd: int | None) -> None:
    if fd is not None:
        _HELD.discard(fd)
        os.close(fd)


def holder(fd: int) -> str:
    """Who holds the lock, from what the holder wrote into the file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return (f"process {info['pid']} on {info['host']} (`{info['command']}`, since "
                f"{time.strftime('%H:%M:%S', time.localtime(info['since']))})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not written its PID yet)"


class RunLock:
    """The lock of one folder; acquire() is a no-op on ranks other than 0 and when already held."""

    def __init__(self, folder: Path):
        self.folder, self.fd = Path(folder), None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self, what: str) -> "RunLock":
        """Hold the folder (which must exist) or stop with one line naming who holds it; `what` names the argument
        the folder came from (--out, --resume, export)."""
        if self.fd is not None or not is_main_process_env():
            return self
        path = self.folder / LOCK
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = holder(fd)
                os.close(fd)
                raise UserError(f"{what} {self.folder}: in use by edgedistill {who}; wait for it to finish or stop "
                                "it, then run this again") from None
            except OSError as exc:  # a filesystem without locks (some network mounts): warn, do not refuse
                log.warning("%s: cannot lock it (%s); make sure no other edgedistill command uses it", self.folder,
                            exc.strerror)
                os.close(fd)
                return self
            if self._is_current(fd, path):
                break
            os.close(fd)  # the folder was cleared between our open and our lock: lock the file there now
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                "command": " ".join(["edgedistill", *sys.argv[1:]])[:300]}
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        _HELD.add(fd)
        return self

    @staticmethod
    def _is_current(fd: int, path: Path) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.fd is not None:
            _HELD.discard(self.fd)
            os.close(self.fd)
            self.fd = None

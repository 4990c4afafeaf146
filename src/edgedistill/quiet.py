"""Third-party chatter (exporter graph dumps, quantizer warnings, model-load reports) goes to the run's log file,
not the terminal. Everything touched (file descriptors, handlers, warning filters) is restored on the way out, and
no logger's level is ever changed.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator


_log_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar("edgedistill_library_log", default=None)


@contextlib.contextmanager
def library_log(path: Path | None) -> Iterator[None]:
    """Within this block, third_party_output() appends to `path` (a run's logs/libraries.log)."""
    token = _log_path.set(path)
    try:
        yield
    finally:
        _log_path.reset(token)


def current_library_log() -> Path | None:
    return _log_path.get()


@contextlib.contextmanager
def _redirected_fds(sink) -> Iterator[None]:
    """Point file descriptors 1 and 2 at `sink`, so C++ and torch's own log handlers land there too."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:  # the terminal comes back first: a full disk must not swallow the error that follows
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        with contextlib.suppress(OSError):
            sink.flush()


class Captured:
    """What a third_party_output() block printed, readable once the block has ended (to name an operator a
    runtime refused, say)."""

    text: str = ""


@contextlib.contextmanager
def third_party_output() -> Iterator[Captured]:
    """Send what libraries print, log or warn during this block to the library log (or discard it without one);
    the block's own output stays readable in the yielded Captured."""
    path = current_library_log()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    sink = open(path, "a+", encoding="utf-8") if path is not None else tempfile.TemporaryFile("w+")
    captured, start = Captured(), sink.tell()
    root = logging.getLogger()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    # libraries that call logging.warning() directly would otherwise run logging.basicConfig() on the root logger
    own_root_handler = not root.handlers
    if own_root_handler:
        root.addHandler(handler)
    try:
        try:
            with _redirected_fds(sink), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield captured
            with contextlib.suppress(OSError):
                for w in caught:
                    sink.write(f"warning: {w.category.__name__}: {w.message} ({w.filename}:{w.lineno})\n")
        finally:
            with contextlib.suppress(OSError, ValueError):
                sink.flush()
                sink.seek(start)
                captured.text = sink.read()
    finally:
        if own_root_handler:
            root.removeHandler(handler)
        with contextlib.suppress(OSError):  # a log lost to a full disk; the write that matters fails on its own
            sink.close()


@contextlib.contextmanager
def forking() -> Iterator[None]:
    """Fork children that never touch JAX (TFLite Micro's interpreter, data loader workers). JAX (imported by
    litert-torch) warns at every fork that its own threads could deadlock a child that used JAX; these never do."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield

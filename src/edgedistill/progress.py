"""How a run reports progress: tqdm bars with ETAs (default), nothing (quiet), or JSON lines on stdout (logs, CI);
and `Callback`, what a training loop tells its listeners (the epoch log, the best-model saver, a tracker)."""
from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Iterable, TypeVar

from tqdm.auto import tqdm

from edgedistill.distributed import is_main_process_env

if TYPE_CHECKING:
    import torch.nn as nn

T = TypeVar("T")
MODES = ("bar", "quiet", "jsonl")
_mode = "bar"


def set_mode(mode: str) -> None:
    global _mode
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}")
    _mode = mode


def bars_enabled() -> bool:
    return _mode == "bar"


def emit(event: str, **fields) -> None:
    """One JSON object per line on stdout, in jsonl mode only."""
    if _mode == "jsonl" and is_main_process_env():  # under torchrun, rank 0 speaks for all
        print(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, default=str), flush=True)


class Lines:
    """Progress for a log, not a terminal (CI, `make demo > log`): one plain line per epoch or model, every tenth
    of the way for finer units (images), and no carriage returns."""

    def __init__(self, items: Iterable[T], desc: str, unit: str, total: int | None, initial: int = 0):
        self.items, self.desc, self.unit, self.initial = items, desc, unit, initial
        self.total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
        self.every = 1 if unit in ("epoch", "model") or not self.total else max(1, self.total // 10)
        self.postfix: dict[str, str] = {}

    def set_postfix(self, **fields) -> None:
        self.postfix = {k: str(v) for k, v in fields.items()}

    def __iter__(self):
        t0, done = time.perf_counter(), self.initial
        for item in self.items:
            yield item
            done += 1
            if done % self.every == 0 or done == self.total:
                self._line(done, time.perf_counter() - t0)

    def _line(self, done: int, seconds: float) -> None:
        of = f"/{self.total}" if self.total else ""
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {self.unit} {done}{of}{extra} ({seconds:.1f} s)", file=sys.stderr, flush=True)


def track(items: Iterable[T], desc: str, unit: str, enabled: bool = True, total: int | None = None,
          initial: int = 0) -> Iterable[T]:
    """A tqdm bar on a terminal; on a pipe or file, plain lines. `initial` counts what a resumed run had done, so its
    count goes on from there (epoch 13/40, not 1/28)."""
    show = enabled and bars_enabled()
    if show and not _is_terminal(sys.stderr):
        return Lines(items, desc, unit, total, initial)
    return tqdm(items, desc=desc, unit=unit, total=total, initial=initial, disable=not show, leave=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Callback:
    """Told of the run's start (with any restored history, also when that training had finished), of each epoch's
    row once its state is saved (so a resumed run never repeats a row it was told), and of each new best model."""

    def on_start(self, history: list[dict]) -> None: ...

    def on_epoch(self, row: dict) -> None: ...

    def on_best(self, model: nn.Module, row: dict) -> None: ...

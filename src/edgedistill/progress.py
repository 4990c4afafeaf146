"""How a run reports progress: tqdm bars with ETAs (default), nothing (quiet), or JSON lines on stdout (logs, CI)."""
from __future__ import annotations

import json
import time
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

from edgedistill.distributed import is_main_process_env

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


def track(items: Iterable[T], desc: str, unit: str, enabled: bool = True, total: int | None = None) -> Iterable[T]:
    return tqdm(items, desc=desc, unit=unit, total=total, disable=not (enabled and bars_enabled()), leave=True)

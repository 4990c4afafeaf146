"""edgedistill's own cache folder, and arrays kept there that are slow to make and the same on every run."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgedistill.atomic import atomic_write

log = logging.getLogger("edgedistill")
STALE_WRITE_S = 3600.0  # far longer than writing any cached set takes: a temporary file this old lost its writer


def cache_root() -> Path:
    """$EDGEDISTILL_CACHE, else the user's cache folder ($XDG_CACHE_HOME or ~/.cache)/edgedistill."""
    if os.environ.get("EDGEDISTILL_CACHE"):
        return Path(os.environ["EDGEDISTILL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgedistill"


def _read(path: Path, names: set[str]) -> dict[str, np.ndarray] | None:
    """The arrays kept at `path`, or None when there are none or they are not exactly `names`."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged or foreign file of any kind: the cache only saves time
        log.debug("cached arrays at %s are unreadable (%s); making them again", path, exc)
        return None
    return arrays if set(arrays) == names else None


def cached_arrays(kind: str, recipe: object, names: tuple[str, ...],
                  make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """`make()`'s arrays, read back from <cache>/<kind>/<hash of recipe>.npz when an earlier process made them; a
    cache that cannot be found, read or written costs the time of `make()` and nothing else."""
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:24]
    try:
        path = cache_root() / kind / f"{key}.npz"
    except RuntimeError:  # no home folder to hold it (a container user without a passwd entry)
        return make()
    arrays = _read(path, set(names))
    if arrays is not None:
        return arrays
    arrays = make()
    _remove_stale_writes(path.parent)
    try:
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
    except OSError as exc:
        log.debug("could not keep %s at %s (%s)", kind, path, exc)
    return arrays


def _remove_stale_writes(folder: Path) -> None:
    """Temporary files that a killed process left while writing here (atomic_write's `.KEY.npz.*.tmp`), so that they
    do not pile up; a write still in progress is younger than STALE_WRITE_S and is left alone."""
    for tmp in folder.glob(".*.npz.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > STALE_WRITE_S:
                tmp.unlink()
        except OSError:
            continue

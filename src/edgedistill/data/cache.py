"""edgedistill's own cache folder, and arrays kept there that are slow to make and the same on every run."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from edgedistill.atomic import atomic_write

log = logging.getLogger("edgedistill")


def cache_root() -> Path:
    """$EDGEDISTILL_CACHE, else the user's cache folder ($XDG_CACHE_HOME or ~/.cache)/edgedistill."""
    if os.environ.get("EDGEDISTILL_CACHE"):
        return Path(os.environ["EDGEDISTILL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgedistill"


def cached_arrays(kind: str, recipe: object, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """`make()`'s arrays, read back from <cache>/<kind>/<hash of recipe>.npz when an earlier process made them.
    The cache only saves time: a file that cannot be read is made again, and one that cannot be written is
    skipped, so a read-only home or a full disk costs the seconds and nothing else."""
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = cache_root() / kind / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        if path.exists():
            log.debug("cached %s at %s is unreadable (%s); making it again", kind, path, exc)
    arrays = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
    except OSError as exc:
        log.debug("could not keep %s at %s (%s)", kind, path, exc)
    return arrays

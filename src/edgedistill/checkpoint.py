"""Checkpoints: a plain dict of tensors and primitives, written atomically (atomic.py) and read back with
weights_only."""
from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgedistill.atomic import atomic_write
from edgedistill.errors import UserError, first_line

FORMAT = "edgedistill-checkpoint-v1"
WRITER_FAILED = re.compile(r"unexpected pos|PytorchStreamWriter failed|file write failed")  # torch's zip writer
FULL_BELOW = 64 << 20  # free bytes under which a failed write is taken for a full disk
def atomic_torch_save(path: Path, obj: Any) -> None:
    """torch.save straight into the temporary file, so a large object is never also held as bytes in memory. A
    write torch's zip writer could not finish (a full disk: "unexpected pos") is the OSError it is."""
    try:
        atomic_write(path, lambda fh: torch.save(obj, fh))
    except RuntimeError as exc:
        if not WRITER_FAILED.search(str(exc)):
            raise
        full = shutil.disk_usage(path.parent).free < FULL_BELOW
        code = errno.ENOSPC if full else errno.EIO
        raise OSError(code, os.strerror(code), str(path)) from exc


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(path, {"format": FORMAT, **meta, "state_dict": state})


def load_failure(exc: Exception) -> str:
    """torch.load's reason without its advice to retry with weights_only=False, which would run the file's code."""
    text = str(exc)
    if "weights only load failed" not in text.lower():
        return first_line(exc)
    lines = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]
    reasons = [ln for ln in lines if not ln.startswith(("Please file an issue", "Check the documentation"))]
    return reasons[0] if reasons else "not a plain dict of tensors"


def read_checkpoint(path: str | Path, field: str = "checkpoint") -> dict[str, Any]:
    """Load safely (weights_only); a bare state_dict is accepted and wrapped."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{field}: {str(p)!r} is a folder; give the checkpoint file inside it (a .pt)")
    if p.exists() and not p.is_file():
        raise UserError(f"{field}: {str(p)!r} is not a regular file (a device, pipe or socket); give a .pt file")
    if not p.is_file():
        raise UserError(f"{field}: file {str(p)!r} not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for files that are not checkpoints
        found = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", str(exc), re.IGNORECASE)
        if isinstance(exc, pickle.UnpicklingError) and found:
            raise UserError(f"{field}: {p} holds pickled code or objects ({found.group(1)}), which could run anything "
                            "when loaded, so it was refused. Save only a state_dict (torch.save(model.state_dict(), "
                            "path)) or an edgedistill checkpoint") from None
        raise UserError(f"{field}: {p} is not a readable torch checkpoint ({load_failure(exc)})") from None
    if isinstance(obj, dict) and "state_dict" in obj:
        return obj
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": obj}
    raise UserError(f"{field}: {p} holds neither a state_dict nor an edgedistill checkpoint")


def load_weights(model: nn.Module, ckpt: dict[str, Any], path: str | Path, field: str = "checkpoint") -> None:
    """Load weights strictly; a mismatch names the first missing/unexpected/misshapen key."""
    state = ckpt["state_dict"]
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or misshapen:
        made_for = f" (made for model {ckpt['model']!r} {ckpt.get('args', {})})" if "model" in ckpt else ""
        detail = (f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}" if unexpected
                  else f"{misshapen[0]!r} is {tuple(state[misshapen[0]].shape)}, model wants "
                       f"{tuple(own[misshapen[0]].shape)}")
        raise UserError(f"{field}: {path} was made for another architecture{made_for}: {detail}; "
                        "set the model and args it was trained with")
    model.load_state_dict(state)

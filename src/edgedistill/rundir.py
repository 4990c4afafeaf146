"""The run folder: created fresh (never over a finished run without --overwrite), reopened for --resume, and
described (the software and machine a run was made on). Under torchrun, rank 0 creates it while the others wait.
"""
from __future__ import annotations

import datetime as dt
import platform
import shutil
from pathlib import Path

import torch

from edgedistill import __version__, distributed
from edgedistill.checkpoint import atomic_write_text
from edgedistill.config import ExperimentConfig, config_to_yaml, resolve_config
from edgedistill.errors import UserError


def prepare_run_dir(out: Path, overwrite: bool) -> Path:
    """Nothing already written is lost: a non-empty folder is replaced only with --overwrite."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            kind = "a finished run" if (out / "metrics.json").exists() else "files (an unfinished run?)"
            raise UserError(f"--out {out}: holds {kind}; pass --overwrite to replace it or choose another folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def resumed_config(run_dir: Path, config: object, overrides: list[str] | None) -> ExperimentConfig:
    """The config an unfinished run folder was started with; resuming under another config would mix two runs."""
    if config is not None or overrides:
        raise UserError("--resume RUN_DIR: give only the run folder; its config.yaml is reused as written")
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"--resume {run_dir}: no config.yaml there; is it a run folder?")
    if (run_dir / "metrics.json").exists():
        raise UserError(f"--resume {run_dir}: that run has finished; `edgedistill report {run_dir}` rebuilds its "
                        "reports")
    return resolve_config(run_dir / "config.yaml")


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """A SIGKILL during an atomic write leaves its temporary file (never a final name); --resume clears them."""
    stale = [p for p in run_dir.rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale


def open_run_dir(cfg: ExperimentConfig, out_dir: str | Path | None, overwrite: bool) -> Path:
    """A fresh run folder holding the resolved config, made by rank 0 while the other processes wait."""
    stamp = distributed.broadcast(dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    run_dir = Path(out_dir) if out_dir else Path("runs") / f"{cfg.name}-{stamp}"
    def make() -> None:
        prepare_run_dir(run_dir, overwrite)
        atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))

    distributed.on_main(make)
    return run_dir


def environment(accel: torch.device) -> dict:
    return {"edgedistill": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "accelerator": str(accel),
            "gpu": torch.cuda.get_device_name(0) if accel.type == "cuda" else None,
            "torch_threads": torch.get_num_threads(), "processes": distributed.world_size()}

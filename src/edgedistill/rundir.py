"""The run folder: created fresh (never over a finished run without --overwrite), reopened for --resume, and
described (the software and machine a run was made on). Under torchrun, rank 0 creates it while the others wait.
"""
from __future__ import annotations

import datetime as dt
import platform
import shutil
from pathlib import Path

import torch
import yaml

from edgedistill import __version__, distributed
from edgedistill.checkpoint import atomic_write_bytes, atomic_write_text
from edgedistill.config import ExperimentConfig, config_to_yaml, read_yaml, resolve_config
from edgedistill.errors import UserError, environment_error
from edgedistill.teachers import teacher_files


RUN_MARKER = ".edgedistill-run"  # written first into every run (and --seeds) folder: what --overwrite may replace


def _is_older_run(path: Path) -> bool:
    """A run made before the marker existed: an edgedistill config.yaml beside the metrics or training logs."""
    try:
        cfg = read_yaml((path / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return (isinstance(cfg, dict) and {"teacher", "student", "distill"} <= cfg.keys()
            and ((path / "metrics.json").is_file() or any((path / "logs").glob("*.jsonl"))))


def is_run_folder(path: Path) -> bool:
    """A folder edgedistill made: its marker, a run from before the marker, or a --seeds folder of such runs."""
    if (path / RUN_MARKER).is_file() or _is_older_run(path):
        return True
    entries = list(path.iterdir())
    return bool(entries) and all(e.name == "seeds.json" or e.name == "seeds.md" or
                                 (e.is_dir() and e.name.startswith("seed_") and is_run_folder(e)) for e in entries)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def prepare_run_dir(out: Path, overwrite: bool, keep: tuple[Path, ...] = ()) -> Path:
    """Nothing already written is lost: a non-empty folder is replaced only with --overwrite, and only when it is
    an edgedistill run; files in `keep` (a teacher checkpoint being reused from it) are put back afterwards."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            kind = "a finished run" if (out / "metrics.json").exists() else "files (an unfinished run?)"
            raise UserError(f"--out {out}: holds {kind}; pass --overwrite to replace it or choose another folder")
        if not is_run_folder(out):
            raise UserError(f"--out {out}: holds files that are not an edgedistill run, and --overwrite replaces "
                            "only a run folder; choose another folder")
        kept = {p.resolve().relative_to(out.resolve()): p.read_bytes() for p in keep
                if p.is_file() and _inside(p, out)}
        shutil.rmtree(out)
        for rel, data in kept.items():
            atomic_write_bytes(out / rel, data)
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RUN_MARKER, "This folder was written by edgedistill; --overwrite may replace it.\n")
    except OSError as exc:
        raise UserError(f"--out {out}: {environment_error(exc)}") from None
    return out


def discard_unstarted(run_dir: Path) -> bool:
    """Remove a run folder a failed start left holding only its config (and its tracking's start), so the corrected
    rerun is not blocked."""
    if not run_dir.is_dir():
        return False
    bookkeeping = (RUN_MARKER, "config.yaml", "tracking.json")
    leftovers = [p for p in run_dir.rglob("*") if p.is_file() and p.name not in bookkeeping
                 and p.relative_to(run_dir).parts[0] != "tensorboard"]
    if leftovers:
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


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


def teacher_inputs(cfg: ExperimentConfig) -> tuple[Path, ...]:
    """The files the teacher is read from: its checkpoint, or an ONNX or ensemble teacher's files."""
    return ((Path(cfg.teacher.checkpoint),) if cfg.teacher.checkpoint else ()) + tuple(teacher_files(cfg.teacher))


def refuse_deleting_teacher(cfg: ExperimentConfig, out: Path) -> None:
    """--overwrite of a --seeds folder would delete a teacher file kept inside it before any seed reads it."""
    inside = [p for p in teacher_inputs(cfg) if p.is_file() and out.is_dir() and _inside(p, out)]
    if inside:
        raise UserError(f"--out {out}: --overwrite would delete {inside[0]}, which the teacher is read from; copy "
                        "it out of that folder or choose another --out")


def open_run_dir(cfg: ExperimentConfig, out_dir: str | Path | None, overwrite: bool) -> Path:
    """A fresh run folder holding the resolved config, made by rank 0 while the other processes wait."""
    stamp = distributed.broadcast(dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    run_dir = Path(out_dir) if out_dir else Path("runs") / f"{cfg.name}-{stamp}"
    keep = teacher_inputs(cfg)

    def make() -> None:
        prepare_run_dir(run_dir, overwrite, keep)
        atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))

    distributed.on_main(make)
    return run_dir


def environment(accel: torch.device) -> dict:
    return {"edgedistill": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "accelerator": str(accel),
            "gpu": torch.cuda.get_device_name(0) if accel.type == "cuda" else None,
            "torch_threads": torch.get_num_threads(), "processes": distributed.world_size()}

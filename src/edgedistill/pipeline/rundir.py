"""The run folder: created fresh (never over a finished run without --overwrite, never deleting an input that
lies in it), locked by the one process that works in it, reopened for --resume, and described (the software and
machine a run was made on). Under torchrun, rank 0 creates and locks it while the others wait.
"""
from __future__ import annotations

import datetime as dt
import platform
import re
import shutil
from importlib.metadata import version
from pathlib import Path

import torch
import yaml

from edgedistill import distributed
from edgedistill.atomic import atomic_write_text
from edgedistill.config import ExperimentConfig, config_to_yaml, read_yaml, resolve_config
from edgedistill.errors import UserError, environment_error
from edgedistill.pipeline.inputs import INPUTS_FILE, Input, InputsRecord, config_digest, verify_config, write_inputs
from edgedistill.roles import Side
from edgedistill.runlock import LOCK, RunLock


RUN_MARKER = ".edgedistill-run"  # written first into every run (and --seeds) folder: what --overwrite may replace
TUNE_MARKER = ".edgedistill-tune"  # an `edgedistill tune` study folder, which its workers share: no run's
RUN_FILES = {"config.yaml", "metrics.json", "report.md", "report.html", INPUTS_FILE, "seeds.json", "seeds.md",
             "student_search.json", RUN_MARKER, LOCK}
RUN_FOLDERS = {"state", "cache", "export", "logs"}  # written, rebuilt or removed by the run itself
MODEL_FILE = re.compile(r"(teacher|student)\w*\.(pt|onnx)")


def entries(path: Path) -> list[Path]:
    """What a folder holds, its lock file aside (a folder holding only that is as good as empty)."""
    return [e for e in path.iterdir() if e.name != LOCK]


def _is_older_run(path: Path) -> bool:
    """A run made before the marker existed: an edgedistill config.yaml beside the metrics or training logs."""
    try:
        cfg = read_yaml((path / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return (isinstance(cfg, dict) and {Side.TEACHER, Side.STUDENT, "distill"} <= cfg.keys()
            and ((path / "metrics.json").is_file() or any((path / "logs").glob("*.jsonl"))))


def is_run_folder(path: Path) -> bool:
    """A folder edgedistill made: its marker, a run from before the marker, or a --seeds folder of such runs; a tune
    study (its config.yaml and teacher logs look like an old run's) is not one."""
    if (path / TUNE_MARKER).is_file():
        return False
    if (path / RUN_MARKER).is_file() or _is_older_run(path):
        return True
    found = entries(path)
    return bool(found) and all(e.name in ("seeds.json", "seeds.md") or
                               (e.is_dir() and e.name.startswith("seed_") and is_run_folder(e)) for e in found)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def own_copy(field: str) -> str | None:
    """The name the run keeps this teacher file under; read from there, it is left as it is."""
    member = re.fullmatch(r"teacher\.args\.members\.(\d+)\.(checkpoint|args\.path)", field)
    if member:
        return f"teacher_member{member[1]}.{'pt' if member[2] == 'checkpoint' else 'onnx'}"
    return {"teacher.checkpoint": "teacher.pt", "teacher.args.path": "teacher.onnx"}.get(field)


def written_by_run(rel: Path, seeds: bool) -> bool:
    """Whether the run writes, rebuilds or removes this path of its folder (a --seeds run, its seed folders too)."""
    top = rel.parts[0]
    if top in RUN_FOLDERS or (seeds and top.startswith("seed_")):
        return True
    return len(rel.parts) == 1 and (top in RUN_FILES or bool(MODEL_FILE.fullmatch(top)))


def refuse_inputs_in_the_way(out: Path, inputs: list[Input], seeds: bool = False) -> None:
    """--overwrite keeps the inputs that lie in the old folder where they are; one the run would itself overwrite
    or remove (its config.yaml, its state/, a seed's folder) stops the run in one line, before anything is deleted."""
    if not out.is_dir() or not is_run_folder(out):  # a user's own folder is refused whole by prepare_run_dir
        return
    for i in inputs:
        if not _inside(i.path, out):
            continue
        rel = i.path.resolve().relative_to(out.resolve())
        if written_by_run(rel, seeds) and not (str(rel) == own_copy(i.field) and not seeds):
            raise UserError(f"--out {out}: --overwrite would delete or replace {i.path}, which {i.field} is read "
                            "from; copy it out of that folder or choose another --out")


def clear_run_dir(out: Path, keep: list[Path]) -> None:
    """Remove what the old run wrote: everything but the lock and the inputs inside (with the folders above them)."""
    root = out.resolve()
    kept = {p.resolve().relative_to(root) for p in keep if _inside(p, out)}

    def clear(folder: Path) -> None:
        for entry in folder.iterdir():
            rel = entry.relative_to(root)
            if rel in kept or rel == Path(LOCK):
                continue
            if entry.is_dir() and not entry.is_symlink():
                if any(k.is_relative_to(rel) for k in kept):
                    clear(entry)
                else:
                    shutil.rmtree(entry)
            else:
                entry.unlink()

    clear(root)


def refuse_non_empty(out: Path, overwrite: bool) -> None:
    """A folder with files is replaced only with --overwrite, and only when edgedistill made it."""
    if not overwrite:
        kind = "a finished run" if (out / "metrics.json").exists() else "files (an unfinished run?)"
        raise UserError(f"--out {out}: holds {kind}; pass --overwrite to replace it or choose another folder")
    if not is_run_folder(out):
        raise UserError(f"--out {out}: holds files that are not an edgedistill run, and --overwrite replaces "
                        "only a run folder; choose another folder")


def check_out_dir(out: Path, overwrite: bool, inputs: list[Input]) -> None:
    """What prepare_run_dir would refuse, checked without touching the folder: before a long `student: auto`
    search, which must not end in a refusal it could have met at once."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; choose a folder")
    if out.is_dir() and entries(out):
        refuse_non_empty(out, overwrite)
        refuse_inputs_in_the_way(out, inputs)


def prepare_run_dir(out: Path, overwrite: bool, keep: tuple[Path, ...] = (), lock: RunLock | None = None,
                    what: str = "--out") -> Path:
    """Nothing already written is lost: a non-empty folder is replaced only with --overwrite, and only when it is
    an edgedistill run; the inputs inside it (a teacher checkpoint being reused from it) stay where they are. The
    folder is locked first, so a live run in it is never replaced."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; choose a folder")
    if out.is_dir() and entries(out) and not is_run_folder(out):  # refused before a lock file is put in it
        refuse_non_empty(out, overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (lock or RunLock(out)).acquire(what)
    except OSError as exc:
        raise UserError(f"--out {out}: {environment_error(exc)}") from None
    if entries(out):
        refuse_non_empty(out, overwrite)
        clear_run_dir(out, list(keep))
    try:
        atomic_write_text(out / RUN_MARKER, "This folder was written by edgedistill; --overwrite may replace it.\n")
    except OSError as exc:
        raise UserError(f"--out {out}: {environment_error(exc)}") from None
    return out


def claim_existing(out: Path | None, what: str) -> RunLock | None:
    """Lock a run folder that already exists before any work, so a command on a live run stops at once; a new or
    empty folder is locked when it is made (prepare_run_dir), and a user's own folder is never written into."""
    if out is None or not out.is_dir() or not is_run_folder(out):  # a study or a user's folder is refused, unlocked
        return None
    return RunLock(out).acquire(what)


def discard_unstarted(run_dir: Path, inputs: list[Input] = ()) -> bool:
    """Remove a run folder a failed start (a bad input, a `student: auto` search that found nothing) left holding
    only its config and library log (and its tracking's start), so the corrected rerun is not blocked; never one
    that holds an input."""
    if not run_dir.is_dir() or any(_inside(i.path, run_dir) for i in inputs):
        return False
    bookkeeping = (RUN_MARKER, LOCK, INPUTS_FILE, "config.yaml", "tracking.json")
    leftovers = [p for p in run_dir.rglob("*") if p.is_file() and p.name not in bookkeeping
                 and p.relative_to(run_dir) != Path("logs", "libraries.log")
                 and p.relative_to(run_dir).parts[0] != "tensorboard"]
    if leftovers:
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def resumed_config(run_dir: Path, config: object, overrides: list[str] | None) -> ExperimentConfig:
    """The config an unfinished run folder was started with; resuming under another config would mix two runs."""
    if config is not None or overrides:
        raise UserError("--resume RUN_DIR: give only the run folder; its config.yaml is reused as written")
    if (run_dir / TUNE_MARKER).is_file():
        raise UserError(f"--resume {run_dir}: is an `edgedistill tune` study, not a run; to continue it, run "
                        f"`edgedistill tune` with its config and --out {run_dir} again")
    if not (run_dir / "config.yaml").is_file():
        if run_dir.is_dir() and is_run_folder(run_dir) and any(run_dir.glob("seed_*/config.yaml")):
            raise UserError(f"--resume {run_dir}: is a --seeds folder made before --resume could continue one "
                            f"whole; `edgedistill run --resume {run_dir}/seed_N` finishes an unfinished seed, but not "
                            "the seeds after it nor seeds.md")
        raise UserError(f"--resume {run_dir}: no config.yaml there; is it a run folder?")
    if not is_run_folder(run_dir):
        raise UserError(f"--resume {run_dir}: holds a config.yaml but is not a run edgedistill made, and --resume "
                        f"would write a run over its files; start one with `edgedistill run {run_dir / 'config.yaml'} "
                        "--out NEW_FOLDER`")
    if (run_dir / "metrics.json").exists():
        raise UserError(f"--resume {run_dir}: that run has finished; `edgedistill report {run_dir}` rebuilds its "
                        "reports")
    verify_config(run_dir, "--resume")
    return resolve_config(run_dir / "config.yaml")


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """A SIGKILL during an atomic write leaves its temporary file (never a final name), and one during the teacher
    cache's build its temporary folder; the process that holds the run's lock clears them."""
    stale = sorted(p for p in run_dir.rglob(".*.tmp*") if re.search(r"\.tmp(-\d+)?$", p.name))
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
    return stale


def open_run_dir(cfg: ExperimentConfig, out_dir: str | Path | None, overwrite: bool, lock: RunLock | None = None,
                 inputs: list[Input] = (), record: InputsRecord | None = None) -> tuple[Path, RunLock]:
    """A fresh run folder holding the resolved config and the inputs' fingerprints, made and locked by rank 0 while
    the other processes wait."""
    stamp = distributed.broadcast(dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    run_dir = Path(out_dir) if out_dir else Path("runs") / f"{cfg.name}-{stamp}"
    lock = lock or RunLock(run_dir)

    def make() -> None:
        held = lock.held
        try:
            if overwrite:
                refuse_inputs_in_the_way(run_dir, list(inputs))
            prepare_run_dir(run_dir, overwrite, tuple(i.path for i in inputs), lock)
            atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))
            if record is not None:
                write_inputs(run_dir, record.model_copy(update={"config_sha256": config_digest(run_dir)}))
        except BaseException:
            if not held:  # taken here: a failed start leaves the folder free for the corrected rerun
                lock.release()
            raise

    distributed.on_main(make)
    return run_dir, lock


def environment(accel: torch.device) -> dict:
    return {"edgedistill": version("edgedistill"), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "accelerator": str(accel),
            "gpu": torch.cuda.get_device_name(0) if accel.type == "cuda" else None,
            "torch_threads": torch.get_num_threads(), "processes": distributed.world_size()}

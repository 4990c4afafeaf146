"""Inputs are sacred: every file a run reads (its config, data, teacher files, device catalogue) is named by an
absolute path and fingerprinted when the run starts, in RUN_DIR/inputs.json. `--overwrite` never deletes one
(pipeline/rundir.py), and `--resume` and `export` read the data where the run read it, not relative to the current folder,
and stop in one line when it changed, so a resumed run never finishes on other data.

A file's fingerprint is its size, modification time and sha256; a folder's (an image folder, a Fashion-MNIST copy,
a Hugging Face model) is every visible file's relative path, size and modification time, which costs a stat per file
and no reads, as the image pack's key does. A file whose size and time are unchanged is taken as unchanged; one
whose time moved is hashed again, so a `touch` alone does not stop a resume.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgedistill.atomic import atomic_write_text
from edgedistill.config import ExperimentConfig
from edgedistill.errors import UserError, first_line
from edgedistill.roles import Side
from edgedistill.strict import error_location
from edgedistill.teachers.onnx import external_data_files, file_sha256

INPUTS_FILE = "inputs.json"
FORMAT = "edgedistill-inputs-v1"
PATH_OPTIONS = ("test_path", "pack_dir", "tokenizer")  # data.options that name a place on disk
READ_OPTIONS = ("test_path", "tokenizer")  # ... of which these are read (pack_dir is a cache the run writes)
MAX_SEEDS = 1000  # --seeds N: each seed is a whole run
PATH_MODELS = ("onnx", "hf_text")  # models whose args.path is a file or folder they are read from


@dataclass(frozen=True)
class Input:
    field: str  # the config key that names it
    path: Path  # absolute
    role: str  # config | data | teacher | device: which commands read it again


class _Recorded(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    field: str
    path: str
    role: str


class RecordedFile(_Recorded):
    kind: Literal["file"]
    bytes: int
    mtime_ns: int
    sha256: str


class RecordedFolder(_Recorded):
    kind: Literal["folder"]
    files: int
    bytes: int
    listing_sha256: str


class SeedsPlan(BaseModel):
    """What a --seeds folder was started with: how many seeds, and the config each is derived from."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    n: int = Field(ge=2, le=MAX_SEEDS)
    config: dict[str, Any]


class InputsRecord(BaseModel):
    """inputs.json: the fingerprints, the config's digest (a single run) or the seeds' plan (a --seeds folder)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal[FORMAT]
    inputs: list[Annotated[RecordedFile | RecordedFolder, Field(discriminator="kind")]]
    config_sha256: str | None = None
    seeds: SeedsPlan | None = None


def _absolute(value: Any) -> Any:
    return os.path.abspath(value) if isinstance(value, str) and value else value


def _model_paths(model: dict) -> None:
    if model.get("checkpoint"):
        model["checkpoint"] = _absolute(model["checkpoint"])
    args = model.get("args")
    if isinstance(args, dict):
        if model.get("model") in PATH_MODELS and isinstance(args.get("path"), str):
            args["path"] = _absolute(args["path"])
        members = args.get("members") if model.get("model") == "ensemble" else None
        for member in members if isinstance(members, list) else []:
            if isinstance(member, dict):
                _model_paths(member)


def absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config with every path made absolute against the current folder, as the run reads them; config.yaml
    keeps them so, and --resume and export from any folder read the same files."""
    raw = cfg.model_dump(mode="json")
    raw["device_catalog"] = _absolute(raw["device_catalog"])
    raw["data"]["path"] = _absolute(raw["data"]["path"])
    raw["data"]["unlabeled"] = _absolute(raw["data"]["unlabeled"])
    options = raw["data"]["options"]
    for key in PATH_OPTIONS:
        if isinstance(options.get(key), str) and options[key] != "minilm":  # the tokenizer option's built-in name
            options[key] = _absolute(options[key])
    for role in Side:
        _model_paths(raw[role])
    return ExperimentConfig.model_validate(raw)


def _model_inputs(model: dict, field: str) -> list[Input]:
    found = []
    if model.get("checkpoint"):
        found.append(Input(f"{field}.checkpoint", Path(model["checkpoint"]), Side.TEACHER))
    args = model.get("args") if isinstance(model.get("args"), dict) else {}
    if model.get("model") in PATH_MODELS and isinstance(args.get("path"), str):
        path = Path(args["path"])
        found.append(Input(f"{field}.args.path", path, Side.TEACHER))
        if model["model"] == "onnx":
            found += [Input(f"{field}.args.path (external data)", p, Side.TEACHER) for p in external_data_files(path)]
    if model.get("model") == "ensemble" and isinstance(args.get("members"), list):
        for i, member in enumerate(args["members"]):
            if isinstance(member, dict):
                found += _model_inputs(member, f"{field}.args.members.{i}")
    return found


def run_inputs(cfg: ExperimentConfig, config_file: str | Path | None = None) -> list[Input]:
    """What a run with this config reads: the config file itself, then every file or folder its keys name."""
    raw = cfg.model_dump(mode="json")
    found = [Input("config", Path(os.path.abspath(config_file)), "config")] if config_file else []
    if raw["data"]["path"]:
        found.append(Input("data.path", Path(raw["data"]["path"]), "data"))
    if raw["data"]["unlabeled"]:
        found.append(Input("data.unlabeled", Path(raw["data"]["unlabeled"]), "data"))
    for key in READ_OPTIONS:
        value = raw["data"]["options"].get(key)
        if isinstance(value, str) and value != "minilm":
            found.append(Input(f"data.options.{key}", Path(value), "data"))
    for role in Side:
        found += _model_inputs(raw[role], role)
    if raw["device_catalog"]:
        found.append(Input("device_catalog", Path(raw["device_catalog"]), "device"))
    # a missing file, or a device such as /dev/zero (hashing it would never end), is refused by its loader, naming its key
    return [i for i in found if i.path.is_file() or i.path.is_dir()]


def visible_files(folder: Path) -> list[Path]:
    """Every file under folder (symlinked folders followed once), hidden names skipped as the loaders skip them."""
    out, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return out


def fingerprint(path: Path) -> dict:
    """A file's size, time and sha256; a folder's listing digest (relative paths, sizes and times)."""
    if path.is_dir():
        h, total, files = hashlib.sha256(), 0, visible_files(path)
        for f in files:
            st = f.stat()
            total += st.st_size
            h.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"kind": "folder", "files": len(files), "bytes": total, "listing_sha256": h.hexdigest()}
    st = path.stat()
    return {"kind": "file", "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(path)}


def record_inputs(inputs: list[Input]) -> InputsRecord:
    """The fingerprints of the inputs, as inputs.json holds them."""
    try:
        return InputsRecord.model_validate({"format": FORMAT, "inputs": [
            {"field": i.field, "path": str(i.path), "role": i.role, **fingerprint(i.path)} for i in inputs]})
    except OSError as exc:
        raise UserError(f"cannot read {exc.filename}: {exc.strerror}") from None


def write_inputs(run_dir: Path, record: InputsRecord) -> None:
    # json.dumps, as before the record was typed: the same bytes, and a path that is not UTF-8 stays writable
    atomic_write_text(run_dir / INPUTS_FILE, json.dumps(record.model_dump(mode="json", exclude_none=True), indent=1))


def read_inputs(run_dir: Path, what: str) -> InputsRecord | None:
    """A run's inputs.json, or None for a run from before it was kept; one line naming the file when it cannot be
    read or is not one edgedistill wrote (edited by hand, cut short)."""
    path = run_dir / INPUTS_FILE
    try:
        return InputsRecord.model_validate(json.loads(path.read_text()))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        problem = exc.strerror
    except ValidationError as err:
        problem = f"{error_location(err.errors()[0])}: {err.errors()[0]['msg']}"
    except ValueError as exc:  # not JSON, or not UTF-8
        problem = first_line(exc)
    raise UserError(f"{what} {run_dir}: {path} is unreadable ({problem}); the inputs the run started with cannot "
                    "be checked, so start a new run") from None


def change(entry: RecordedFile | RecordedFolder) -> str | None:
    """How a recorded input differs now, or None when it is the same."""
    path = Path(entry.path)
    if not path.exists():
        return "is gone"
    if entry.kind == "folder":
        if not path.is_dir():
            return "is no longer a folder"
        now = fingerprint(path)
        if now["listing_sha256"] == entry.listing_sha256:
            return None
        return (f"changed: {entry.files} files of {entry.bytes:,} bytes then, {now['files']} of "
                f"{now['bytes']:,} now (or a file was replaced)")
    if path.is_dir():
        return "is now a folder"
    st = path.stat()
    if st.st_size == entry.bytes and st.st_mtime_ns == entry.mtime_ns:
        return None
    if st.st_size == entry.bytes and file_sha256(path) == entry.sha256:
        return None  # touched, not changed
    return f"changed ({entry.bytes:,} bytes then, {st.st_size:,} now, another sha256)"


def verify_inputs(run_dir: Path, what: str, roles: tuple[str, ...]) -> None:
    """Stop in one line when an input of these roles changed since the run started (a run from before inputs.json
    has nothing to check)."""
    record = read_inputs(run_dir, what)
    for entry in record.inputs if record else []:
        if entry.role not in roles:
            continue
        try:
            how = change(entry)
        except OSError as exc:
            how = f"cannot be read ({exc.strerror})"
        if how:
            raise UserError(f"{what} {run_dir}: {entry.field} {entry.path} {how} since the run started; "
                            "restore it, or start a new run on the new data")


def config_digest(run_dir: Path) -> str:
    """The sha256 of a run's config.yaml as the run wrote it: the settings its state files were made under."""
    return file_sha256(run_dir / "config.yaml")


def verify_config(run_dir: Path, what: str) -> None:
    """Stop in one line when config.yaml was edited since the run started: a resume (or export) under other settings
    would mix two runs (a schedule cut short, another split) and report the mix as one (a run from before the
    digest was recorded has nothing to check)."""
    record = read_inputs(run_dir, what)
    if record and record.config_sha256 and config_digest(run_dir) != record.config_sha256:
        raise UserError(f"{what} {run_dir}: config.yaml was edited since the run started, and its models were made "
                        "under the old settings; restore it, or start a new run from the edited copy "
                        f"(`edgedistill run EDITED.yaml --out NEW_FOLDER`)")

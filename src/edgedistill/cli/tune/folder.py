"""The study folder: made for one study, joined only by workers of that study, and never mistaken for a new study's.

Its marker names the study and a uid the study also holds (study.new_uid). Everything else in the folder
(trials/<number>/, rescore/, confirm/) is keyed by trial number alone, so a folder whose study was deleted, or
recreated under the same name, would hand an old trial's checkpoint or test table to a new trial with the same
number: such a folder is refused, before anything is written.
"""
from __future__ import annotations

import json
from pathlib import Path

import optuna

from edgedistill.atomic import atomic_write_text, read_json_object
from edgedistill.cli.seeds import SeedsResult, seeds_table
from edgedistill.cli.tune.study import UID_PREFIX, new_uid
from edgedistill.cli.tune.storage import redacted
from edgedistill.config import ExperimentConfig, config_to_yaml
from edgedistill.errors import UserError
from edgedistill.pipeline.rundir import TUNE_MARKER

RESULTS = ("trials", "rescore", "confirm")  # what a study leaves in its folder, keyed by trial number
CONFIRM_MARKER = "confirm.json"
DEFAULT_STORAGE = "study.db in this folder"


def folder_study(name: str, storage: str | None) -> dict:
    """What the folder's marker says it holds: one study, since trials/<number>/ is that study's trial."""
    return {"study": name, "storage": redacted(storage) if storage else DEFAULT_STORAGE}


def read_marker(out: Path) -> dict:
    """The folder's marker; a damaged one is refused rather than guessed at."""
    held = read_json_object(out / TUNE_MARKER)
    if held is None or not isinstance(held.get("study"), str):
        raise UserError(f"--out {out}: its {TUNE_MARKER} is damaged, so the study it holds is unknown; restore it "
                        "or choose another --out")
    return held


def check_folder(out: Path, study: dict) -> dict | None:
    """A folder of this study is joined (its marker returned), an empty or new one made (None); anything else,
    including a default-SQLite folder whose study.db is gone while its trials remain, is left alone."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; choose a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    if not (out / TUNE_MARKER).is_file():
        raise UserError(f"--out {out}: holds files that are not a tune study; choose another folder")
    held = read_marker(out)
    held = held | {"storage": redacted(str(held.get("storage")))}  # a marker written before a redaction fix
    if {k: held.get(k) for k in study} != study:
        raise UserError(f"--out {out}: holds study {held['study']!r} ({held['storage']}), not "
                        f"{study['study']!r} ({study['storage']}); give that --study-name and --storage, or another "
                        "--out")
    left = [name for name in RESULTS if (out / name).exists()]
    if study["storage"] == DEFAULT_STORAGE and left and not (out / "study.db").is_file():
        raise UserError(f"--out {out}: holds {', '.join(left)} of study {held['study']!r} but not its study.db, so a "
                        "new study would take those trials for its own; restore study.db, or choose another --out")
    return held


def check_same_study(out: Path, held: dict | None, uids: set[str] | None, where: str) -> None:
    """The folder's results belong to the study the database holds under that name now (its folder uids; None: it
    holds none), not to an earlier one: trial numbers start again in a new study."""
    if held and held.get("uid") and held["uid"] not in (uids or set()) and any((out / n).exists() for n in RESULTS):
        raise UserError(f"--out {out}: holds the trials of an earlier study {held['study']!r}, not of the one {where} "
                        "holds now (it was deleted or made again since); choose another --out")


def make_folder(out: Path, cfg: ExperimentConfig, study: dict) -> None:
    """The folder, its config.yaml and marker, written by the first worker."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / TUNE_MARKER).is_file():
        atomic_write_text(out / "config.yaml", config_to_yaml(cfg))
        atomic_write_text(out / TUNE_MARKER, json.dumps(study))


def record_uid(out: Path, study: optuna.Study) -> None:
    """The folder's uid in its marker and its study, unless the study already holds the one the marker names."""
    held = read_marker(out)
    if not held.get("uid") or UID_PREFIX + held["uid"] not in study.user_attrs:
        atomic_write_text(out / TUNE_MARKER, json.dumps(held | {"uid": new_uid(study)}))


def confirmed(out: Path) -> dict | None:
    """The best recipe's run against scratch over seeds, as confirm/ holds it: the trial it ran, its seed count and
    its table; None until one finished, or when its files were damaged since (the seeds then run again)."""
    folder = out / "confirm"
    done, summary = read_json_object(out / CONFIRM_MARKER), read_json_object(folder / "seeds.json")
    if done is None or summary is None:
        return None
    try:
        table = seeds_table(summary)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return done | {"folder": folder.name, "table": table, "summary": summary}


def confirmed_result(out: Path, done: dict) -> SeedsResult | None:
    """confirm/ as the run_seeds result it holds, when it ran `done` (the trial and the seed count)."""
    from edgedistill.report import read_metrics

    held = confirmed(out)
    if not held or {k: held.get(k) for k in done} != done:
        return None
    try:
        metrics = read_metrics(out / held["folder"] / f"seed_{held['summary']['seeds'][0]}")
    except UserError:  # damaged since: run the seeds again
        return None
    return SeedsResult(out / held["folder"], held["summary"], held["table"], metrics)

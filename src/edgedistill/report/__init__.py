"""Human-readable comparison built from metrics.json alone: the terminal table, report.md and report.html."""
from __future__ import annotations

import json
from pathlib import Path

from edgedistill.errors import UserError, first_line

from edgedistill.metrics import SCHEMA_VERSION, check_metrics
from edgedistill.report.markdown import comparison_table, write_report_md


COMPARE_MARKER = ".edgedistill-compare"  # a folder compare made: the only kind it writes into again


def write_reports(run_dir: Path, metrics: dict) -> Path:
    from edgedistill.report.html import write_report_html

    write_report_md(run_dir / "report.md", metrics)
    write_report_html(run_dir / "report.html", metrics)
    return run_dir / "report.html"


def read_metrics(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "metrics.json"
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a run's record; move it away, then restore metrics.json or rerun "
                        "the experiment")
    if not path.is_file():
        raise UserError(f"{run_dir}: no metrics.json; pass the folder of a finished run")
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({first_line(exc)}); restore it from a copy or rerun the "
                        "experiment") from None
    return check_metrics(metrics, str(path))


def rebuild_reports(run_dir: str | Path) -> Path:
    """`edgedistill report RUN_DIR`: regenerate report.md and report.html from metrics.json."""
    return write_reports(Path(run_dir), read_metrics(run_dir))


def compare_runs(run_dirs: list[str | Path], out_dir: str | Path) -> Path:
    """`edgedistill compare`: one report across runs, labelled by run folder name."""
    from edgedistill.atomic import atomic_write_text
    from edgedistill.report.html import compare_html, compare_rows

    runs = [(Path(d).name, read_metrics(d)) for d in run_dirs]
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        runs = [(str(Path(d)), m) for d, (_, m) in zip(run_dirs, runs)]
    out = Path(out_dir)
    if (out / "metrics.json").exists():
        raise UserError(f"--out {out}: is a run folder; its report.html would be replaced. Choose another folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; choose a folder")
    if out.is_dir() and not (out / COMPARE_MARKER).is_file() and any(out.iterdir()):
        raise UserError(f"--out {out}: holds files that `edgedistill compare` did not write, which its report.html "
                        "and compare.md could replace; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / COMPARE_MARKER, "Written by edgedistill compare; a later compare may replace its files.\n")
    atomic_write_text(out / "compare.md", "# edgedistill comparison\n\n" + compare_rows(runs) + "\n")
    atomic_write_text(out / "report.html", compare_html(runs))
    return out / "report.html"


__all__ = ["comparison_table", "write_reports", "rebuild_reports", "compare_runs", "read_metrics"]

"""Shared by the benchmark scripts: describe the machine and replace one marked section of docs/benchmarks.md."""
from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shlex
import sys
from pathlib import Path

import torch

from edgedistill.roles import LABELS
from edgedistill.units import human_bytes

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])


def header(wall_seconds: float, what: str = "wall time") -> str:
    date = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f"- command: `{command_line()}`\n- date: {date}\n- machine: {machine()}\n"
            f"- {what}: {wall_seconds / 60:.1f} min\n")


def replace_section(key: str, body: str, doc: Path = DOC) -> None:
    """Put `body` between <!-- key:start --> and <!-- key:end -->, appending the markers if they are new."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def model_rows(metrics: dict) -> str:
    """Teacher / scratch / KD rows with accuracy, F1, params, fp32 size and training time."""
    rows = ["| model | arch | test acc | macro F1 | params | size fp32 | best epoch | train time |",
            "|---|---|---|---|---|---|---|---|"]
    for role, label in LABELS.items():
        if role not in metrics["models"]:
            continue
        m = metrics["models"][role]
        tr = m.get("train", {})
        train = f"{tr['seconds'] / 60:.1f} min" if tr else "loaded"
        rows.append(f"| {label} | {m['model']} {m['args']} | {100 * m['test']['accuracy']:.2f}% | "
                    f"{m['test']['f1_macro']:.4f} | {m['params']:,} | {human_bytes(m['size_fp32_bytes'])} | "
                    f"{tr.get('best_epoch', '-')} | {train} |")
    return "\n".join(rows)

"""student: auto on a real dataset and device: the Optuna search alone, with its trial budget, every trial's fit
verdict and validation accuracy, and the chosen student.

    python benchmarks/student_search.py [--config configs/fashion_mnist.yaml] [--device mcu] [--trials 8] \
        [--epochs 1] [--family convnet] [--timeout 1200]

The search is the pipeline's step 3 (edgedistill.pipeline.search.search_student), run without the teacher and the
distillation that would follow it in a full run.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from edgedistill.config import resolve_config
from edgedistill.deploy.fit import fit_word
from edgedistill.pipeline import prepare_in, stages
from edgedistill.report.markdown import search_section
from edgedistill.units import human_bytes
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    ap.add_argument("--device", default="mcu")
    ap.add_argument("--family", default="convnet")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1200.0)
    ap.add_argument("--key", default="student_search")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = resolve_config(args.config, [f"device={args.device}", "student.model=auto",
                                       f"student.search.family={args.family}", f"student.search.trials={args.trials}",
                                       f"student.search.epochs={args.epochs}",
                                       f"student.search.timeout_s={args.timeout}"])
    with tempfile.TemporaryDirectory() as tmp:  # the pipeline's own search stage, in a folder not kept
        run = stages.search(prepare_in(cfg, Path(tmp)))
    search, device = run.search, run.profile
    chosen = next(t for t in search["trials"] if t["number"] == search["best_trial"])
    section = search_section({"student_search": search}).split("\n", 2)[2]
    body = (f"### student: auto on {cfg.data.name} for the {device.name} profile\n\n{header(time.perf_counter() - t0)}"
            f"- config: `{Path(args.config).name}` with the student replaced by `auto`\n"
            f"- chosen: {search['family']} {chosen['args']}, {chosen['params']:,} params, {chosen['dtype']} file "
            f"{human_bytes(chosen['file_bytes'])}, peak RAM {human_bytes(chosen['ram_bytes'])}, validation "
            f"accuracy {100 * chosen['val_accuracy']:.2f}% after {args.epochs} epoch(s); fits {device.name}: "
            f"{fit_word(chosen['fits'])}\n\n{section}")
    replace_section(args.key, body)
    print(body)


if __name__ == "__main__":
    main()

"""Flagship benchmark: Fashion-MNIST teacher -> student of at most 100K params, scratch and KD, through the pipeline.

    python benchmarks/fashion_mnist.py [--config configs/fashion_mnist.yaml] [--set key=value ...]
    python benchmarks/fashion_mnist.py --from-run RUN_DIR [--teacher-run TEACHER_RUN_DIR]

The first form runs the experiment; the second records a finished run (for instance one that loaded its teacher
with teacher.checkpoint, whose training log lives in TEACHER_RUN_DIR/logs/teacher.jsonl). Either writes its table
into docs/benchmarks.md with the command, date, machine and wall time.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import edgedistill
from edgedistill.report import read_metrics
from record import header, model_rows, replace_section

ROOT = Path(__file__).resolve().parent.parent


def teacher_provenance(teacher_run: Path) -> str:
    rows = [json.loads(line) for line in (teacher_run / "logs" / "teacher.jsonl").read_text().splitlines()]
    best = max(rows, key=lambda r: r["val_accuracy"])
    minutes = sum(r["seconds"] for r in rows) / 60
    return (f"- teacher: trained in `{teacher_run}` ({len(rows)} epochs, {minutes:.0f} min of epochs, best validation "
            f"accuracy {100 * best['val_accuracy']:.2f}% at epoch {best['epoch']}), loaded by the run below through "
            "teacher.checkpoint and scored on the test set there\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "fashion_mnist"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--from-run", help="record this finished run instead of running the experiment")
    ap.add_argument("--teacher-run", help="run folder whose logs/teacher.jsonl trained the loaded teacher")
    ap.add_argument("--key", default="fashion_mnist", help="section of docs/benchmarks.md to replace")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.from_run:
        metrics = read_metrics(args.from_run)
        source = f"- recorded from run folder `{args.from_run}` (config `{metrics['name']}`, finished {metrics['created']})\n"
        wall = sum(m.get("train", {}).get("seconds", 0) for m in metrics["models"].values())
    else:
        metrics = edgedistill.run(args.config, out_dir=args.out, overrides=args.overrides, overwrite=True).metrics
        source = f"- config: `{Path(args.config).name}`{' with ' + ', '.join(args.overrides) if args.overrides else ''}\n"
        wall = time.perf_counter() - t0
    if args.teacher_run:
        source += teacher_provenance(Path(args.teacher_run))
    c = metrics["comparison"]
    what = "training time in the recorded run (sum over its models)" if args.from_run else "wall time"
    body = (f"### Fashion-MNIST: teacher -> student (one seed)\n\n{header(wall, what)}{source}\n{model_rows(metrics)}\n\n"
            f"KD gain over scratch: {100 * c['kd_gain_over_scratch']:+.2f} points; "
            f"compression {c['compression_ratio_params']:.1f}x in parameters.\n")
    replace_section(args.key, body)
    print(body)


if __name__ == "__main__":
    main()

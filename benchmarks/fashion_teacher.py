"""Train and score the Fashion-MNIST teacher alone, through the pipeline's own steps, so that later runs can load it.

    python benchmarks/fashion_teacher.py [--config configs/fashion_mnist.yaml] [--set key=value ...] [--out DIR]
                                         [--resume]

A teacher costs hours on a CPU; training it once and loading it with teacher.checkpoint keeps the student benchmarks
affordable. --resume continues the teacher in DIR from its last finished epoch (the same config and --set, or it
stops), so a teacher longer than a session is trained in pieces. Writes DIR/teacher.pt, DIR/logs/teacher.jsonl and
DIR/teacher_metrics.json, and the teacher's row into docs/benchmarks.md with the command, date, machine and wall time.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgedistill.atomic import atomic_write_text
from edgedistill.config import resolve_config
from edgedistill.pipeline import model_record, prepare_in, prepare_run_dir, stages
from edgedistill.roles import Role
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent


def same_recipe(path: Path, recipe: dict, resume: bool) -> None:
    """A resumed teacher must continue the recipe it started with, or its epochs would mix two schedules."""
    if resume:
        if not path.is_file():
            raise SystemExit(f"--resume {path.parent}: no teacher was started there ({path.name} is missing)")
        stored = json.loads(path.read_text())
        if stored != recipe:
            raise SystemExit(f"--resume {path.parent}: it was started with {stored}, not {recipe}; use another --out")
    atomic_write_text(path, json.dumps(recipe, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "fashion_teacher"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--key", default="fashion_mnist_teacher", help="section of docs/benchmarks.md to replace")
    ap.add_argument("--resume", action="store_true", help="continue the teacher in --out from its last epoch")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = resolve_config(args.config, args.overrides + ["deploy.enabled=false"])  # the teacher alone
    run_dir = Path(args.out) if args.resume else prepare_run_dir(Path(args.out), overwrite=True)
    same_recipe(run_dir / "recipe.json", {"config": Path(args.config).name, "overrides": args.overrides}, args.resume)
    run = stages.teacher(prepare_in(cfg, run_dir, progress=True))
    record = model_record(Role.TEACHER, run.trained[Role.TEACHER], run.data, run.accel)[0].to_json()
    atomic_write_text(run_dir / "teacher_metrics.json", json.dumps(record, indent=2))
    wall = time.perf_counter() - t0
    t = record["train"]
    overrides = f" with {', '.join(args.overrides)}" if args.overrides else ""
    wall_line = header(wall, "wall time of this invocation (resumed)" if args.resume else "wall time")
    body = (f"### Fashion-MNIST teacher, trained alone (one seed)\n\n{wall_line}"
            f"- config: teacher section of `{Path(args.config).name}`{overrides}\n"
            f"- checkpoint: `{run_dir / 'teacher.pt'}` (load it with `--set teacher.checkpoint=...`)\n\n"
            "| arch | params | epochs | best epoch | best val acc | test acc | macro F1 | train time |\n"
            "|---|---|---|---|---|---|---|---|\n"
            f"| {cfg.teacher.model} {cfg.teacher.args} | {record['params']:,} | {t['epochs']} | {t['best_epoch']} "
            f"| {100 * t['best_val_accuracy']:.2f}% | {100 * record['test']['accuracy']:.2f}% "
            f"| {record['test']['f1_macro']:.4f} | {t['seconds'] / 60:.1f} min |\n")
    replace_section(args.key, body)
    print(body)


if __name__ == "__main__":
    main()

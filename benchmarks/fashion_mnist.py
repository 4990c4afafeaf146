"""Flagship benchmark: Fashion-MNIST teacher -> student of at most 100K params, scratch and KD, through the pipeline.

    python benchmarks/fashion_mnist.py [--set key=value ...]

Writes its table into docs/benchmarks.md with the command, date, machine and wall time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import edgedistill
from record import header, model_rows, replace_section

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "fashion_mnist"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--key", default="fashion_mnist", help="section of docs/benchmarks.md to replace")
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = edgedistill.run(args.config, out_dir=args.out, overrides=args.overrides, overwrite=True)
    wall = time.perf_counter() - t0
    c = result.metrics["comparison"]
    body = (f"### Fashion-MNIST: teacher -> student (one seed)\n\n{header(wall)}- config: `{Path(args.config).name}`"
            f"{' with ' + ', '.join(args.overrides) if args.overrides else ''}\n\n{model_rows(result.metrics)}\n\n"
            f"KD gain over scratch: {100 * c['kd_gain_over_scratch']:+.2f} points; "
            f"compression {c['compression_ratio_params']:.1f}x in parameters.\n")
    replace_section(args.key, body)
    print(result.table)
    print(f"recorded in docs/benchmarks.md ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()

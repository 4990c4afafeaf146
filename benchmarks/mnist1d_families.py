"""MNIST-1D benchmark: CNN, GRU and Transformer teachers, each distilled into the same small student.

    python benchmarks/mnist1d_families.py [--set key=value ...]

(Not named mnist1d.py: the script's folder comes first on sys.path and would shadow the mnist1d package.)

Writes its table into docs/benchmarks.md with the command, date, machine and wall time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import edgedistill
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent
# None is the packaged default (CNN teacher), the experiment `make demo` runs.
CONFIGS = [None, "mnist1d_gru.yaml", "mnist1d_transformer.yaml"]
PUBLISHED = {"resnet": "CNN 94%", "gru": "GRU 91%", "transformer": "-"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "mnist1d"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    rows = ["| teacher | teacher params | teacher acc | published | student params | scratch acc | KD acc | "
            "KD gain | teacher train time |", "|---|---|---|---|---|---|---|---|---|"]
    t0 = time.perf_counter()
    for name in CONFIGS:
        config = ROOT / "configs" / name if name else None
        label = name or "packaged default"
        result = edgedistill.run(config, out_dir=Path(args.out) / (name or "default.yaml").removesuffix(".yaml"),
                                 overrides=args.overrides, overwrite=True)
        m = result.metrics["models"]
        t, s, k = m["teacher"], m["student_scratch"], m["student_kd"]
        rows.append(f"| {t['model']} ({label}) | {t['params']:,} | {100 * t['test']['accuracy']:.2f}% | "
                    f"{PUBLISHED.get(t['model'], '-')} | {s['params']:,} | {100 * s['test']['accuracy']:.2f}% | "
                    f"{100 * k['test']['accuracy']:.2f}% | "
                    f"{100 * result.metrics['comparison']['kd_gain_over_scratch']:+.2f} pts | "
                    f"{t['train']['seconds'] / 60:.1f} min |")
        print(rows[-1], flush=True)
    wall = time.perf_counter() - t0
    body = (f"### MNIST-1D: three teacher families into one student (one seed)\n\n{header(wall)}\n"
            + "\n".join(rows) + "\n\nPublished figures: greydanus/mnist1d README (../shared/anchors.md).\n")
    replace_section("mnist1d", body)


if __name__ == "__main__":
    main()

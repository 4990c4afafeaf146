"""Method table: scratch against KD, DKD, FitNets and attention transfer, each over N seeds, one student.

    python benchmarks/distill_methods.py --set teacher.checkpoint=bench_runs/fashion_teacher_w64/teacher.pt \
        [--config configs/fashion_mnist.yaml] [--seeds 3] [--methods kd,dkd,fitnets,at] [--set key=value ...] \
        [--key fashion_methods_100k]

Each method is an `edgedistill run --seeds N` (the teacher loaded, the validation split fixed, the same seeds), so
its scratch control is trained with the same seeds, recipe and inputs; the table shows both with mean and std, the
paired gain with a paired t-test, and whether it clears the noise. Loading a trained teacher keeps the cost to the students.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from edgedistill.seeds import run_seeds
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent


def pct(stats: dict) -> str:
    return f"{100 * stats['mean']:.2f}% ± {100 * stats['std']:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="kd,dkd,fitnets,at")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "methods"))
    ap.add_argument("--key", default="fashion_methods")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = ["| method | student params | scratch (mean ± std) | distilled (mean ± std) | gain, paired (mean ± std) "
            "| paired t-test p | verdict |", "|---|---|---|---|---|---|---|"]
    teacher = None
    for method in args.methods.split(","):
        res = run_seeds(args.config, args.seeds, out_dir=Path(args.out) / args.key / method,
                        overrides=args.overrides + [f"distill.method={method}"], overwrite=True)
        s = res.summary
        teacher = s["models"]["teacher"]
        g = s["kd_gain_over_scratch"]
        verdict = "gain beyond the noise" if s["gain_exceeds_noise"] else (
            "loss beyond the noise" if s["loss_exceeds_noise"] else "inside the noise")
        p = f"{g['p_value']:.3f}" if g.get("p_value") is not None else "-"
        rows.append(f"| {method} | {s['models']['student_kd']['params']:,} | {pct(s['models']['student_scratch']['accuracy'])} "
                    f"| {pct(s['models']['student_kd']['accuracy'])} | {100 * g['mean']:+.2f} ± {100 * g['std']:.2f} "
                    f"| {p} | {verdict} |")
    body = (f"### Distillation methods against scratch ({args.seeds} seeds each)\n\n{header(time.perf_counter() - t0)}"
            f"- config: `{Path(args.config).name}`{' with ' + ', '.join(args.overrides) if args.overrides else ''}\n"
            f"- teacher: {teacher['params']:,} params, {pct(teacher['accuracy'])} test accuracy\n\n" + "\n".join(rows)
            + "\n\nA gain is beyond the noise when the paired t-test gives p < 0.05 and the mean gain exceeds the "
              "scratch runs' std. Test accuracy of best-on-validation checkpoints.\n")
    replace_section(args.key, body)
    print(body)


if __name__ == "__main__":
    main()

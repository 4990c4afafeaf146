"""Patient and consistent teaching against the teacher-output cache: the same student, the same epochs, the same
teacher, distilled from fixed cached views or from a live teacher on mixed batches (distill.mix).

    python benchmarks/mix_kd.py --set teacher.checkpoint=bench_runs/few_labels/share_0.1/teacher.pt \
        [--config src/edgedistill/configs/default.yaml] [--seeds 3] [--variants cached live mixup cutmix] \
        [--long 4] [--set key=value ...] [--int8 onnxruntime-int8] [--out bench_runs/mix_kd] [--key mnist1d_mix_kd]

Each variant is the pipeline itself (`edgedistill.run`), one run per seed, with the teacher loaded: `cached` turns
the cache on (a bank of the config's K fixed views: configs/fashion_mnist.yaml leaves it off, and would otherwise
run live); `live` turns it off (fresh augmentation, teacher run every step); `mixup` and `cutmix` also mix every
batch, both students alike, so each has a scratch control trained on the same mixed batches. `--long N` adds the
mixup variant at N times the student epochs (Beyer et al.'s "patient"). Each student is scored on the test split
through its deployed int8 file; the gain over the run's own scratch control is paired by seed. Validation accuracy
is in the table, and it alone may choose between the variants.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgedistill.cli.seeds import mean_std, paired_gain
from edgedistill.config import resolve_config
import edgedistill
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"cached": ["distill.cache.enabled=true"], "live": ["distill.cache.enabled=false"],
            "mixup": ["distill.cache.enabled=false", "distill.mix.kind=mixup"],
            "cutmix": ["distill.cache.enabled=false", "distill.mix.kind=cutmix"]}


def one_run(args, variant: list[str], seed: int, out: Path) -> dict:
    """A finished run's figures (reused when its metrics.json is there): per student fp32, int8 and validation."""
    if not (out / "metrics.json").exists():
        sets = args.overrides + variant + [f"seed={args.seed0 + seed}", "data.split_seed=0", "deploy.every_seed=true",
                                           f"deploy.formats=[{args.int8}]", "deploy.qat=off",
                                           "deploy.roles=[student_scratch, student_kd]", "deploy.latency_runs=5"]
        edgedistill.run(args.config, out_dir=out, overrides=sets, overwrite=True, progress=False)
    m = json.loads((out / "metrics.json").read_text())
    return {role: {"fp32": r["test"]["accuracy"], "int8": r["deploy"]["formats"][args.int8]["test_accuracy"],
                   "val": r["train"]["best_val_accuracy"], "seconds": r["train"]["seconds"],
                   "rows": r["train"]["rows_per_epoch"]}
            for role, r in m["models"].items() if role in ("student_scratch", "student_kd")}


def cell(runs: list[dict], key: str) -> str:
    a = mean_std([r[key] for r in runs])
    return f"{100 * a['mean']:.2f}% ± {100 * a['std']:.2f}"


def rows_for(name: str, runs: list[dict]) -> list[str]:
    scratch, kd = [r["student_scratch"] for r in runs], [r["student_kd"] for r in runs]
    g = paired_gain([k["int8"] - s["int8"] for k, s in zip(kd, scratch)],
                    mean_std([s["int8"] for s in scratch])["std"])
    verdict = {1: "gain beyond the noise", -1: "loss beyond the noise", 0: "inside the noise"}[g["verdict"]]
    p = f"{g['p_value']:.3g}" if g["p_value"] is not None else "-"
    sec = lambda xs: f"{mean_std([x['seconds'] for x in xs])['mean']:.0f} s"  # noqa: E731
    return [f"| {name} | scratch | {cell(scratch, 'val')} | {cell(scratch, 'fp32')} | {cell(scratch, 'int8')} | "
            f"{sec(scratch)} | - | - | - |",
            f"| {name} | KD | {cell(kd, 'val')} | {cell(kd, 'fp32')} | {cell(kd, 'int8')} | {sec(kd)} | "
            f"{100 * g['mean']:+.2f} ± {100 * g['std']:.2f} | {p} | {verdict} |"]


def against_first(name: str, runs: list[dict], first: str, base: list[dict], role: str) -> str:
    """A variant's KD student against the first variant's student in `role` of the same seed (the cached one,
    unless --variants leaves it out), in int8. Its scratch student is the plain control a user would train: a mixed
    variant's own control trains on mixed batches and can be weaker."""
    g = paired_gain([r["student_kd"]["int8"] - c[role]["int8"] for r, c in zip(runs, base)],
                    mean_std([c[role]["int8"] for c in base])["std"])
    p = f"p = {g['p_value']:.3g}" if g["p_value"] is not None else "no test"
    who = "KD" if role == "student_kd" else "scratch"
    return (f"- {name} KD against {first} {who}, int8, paired by seed: {100 * g['mean']:+.2f} ± "
            f"{100 * g['std']:.2f} ({p})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "src" / "edgedistill" / "configs" / "default.yaml"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--long", type=int, default=4, help="add mixup at this many times the epochs (0: leave out)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--int8", default="onnxruntime-int8")
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "mix_kd"))
    ap.add_argument("--key", default="mnist1d_mix_kd")
    ap.add_argument("--title", default="MNIST-1D", help="the dataset's name in the section's title")
    args = ap.parse_args()
    cfg = resolve_config(args.config, args.overrides)
    if not cfg.teacher.checkpoint:
        raise SystemExit("load the teacher every variant shares: --set teacher.checkpoint=PATH")
    epochs = cfg.student.train.epochs
    plan = {v: VARIANTS[v] for v in args.variants}
    if args.long:
        plan[f"mixup, {args.long * epochs} epochs"] = VARIANTS["mixup"] + [f"student.train.epochs={args.long * epochs}"]
    t0 = time.perf_counter()
    table = ["| variant | student | val acc | fp32 test acc | int8 test acc | train time | int8 gain over scratch, "
             "paired | p | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    variants, notes, first, reused = {}, [], next(iter(plan)), 0
    for name, sets in plan.items():
        folder = Path(args.out) / name.replace(", ", "_").replace(" ", "_")
        reused += sum((folder / f"seed_{s}" / "metrics.json").exists() for s in range(args.seeds))
        runs = variants[name] = [one_run(args, sets, s, folder / f"seed_{s}") for s in range(args.seeds)]
        table += rows_for(name, runs)
        print("\n".join(table[-2:]), flush=True)
        if name != first:
            notes += [against_first(name, runs, first, variants[first], role)
                      for role in ("student_kd", "student_scratch")]
    rows = runs[0]["student_kd"]["rows"]
    body = (f"### Patient and consistent teaching against the cache, {args.title} ({args.seeds} seeds, {epochs} student "
            f"epochs)\n\n{header(time.perf_counter() - t0, 'wall time of this invocation')}"
            f"- runs: {len(plan) * args.seeds - reused} trained by this invocation, {reused} reused from an earlier "
            "one's metrics.json (their train times are in the table)\n"
            f"- config: `{Path(args.config).name}` with {', '.join(args.overrides)}; int8: {args.int8}\n"
            f"- KD student rows per epoch: {rows['labeled']:,} labelled + {rows['unlabeled']:,} unlabelled\n\n"
            + "\n".join(table) + "\n\n" + "".join(n + "\n" for n in notes) + ("\n" if notes else "") +
            "cached: the teacher's outputs on a bank of fixed augmented views, built once (the config's "
            f"{cfg.distill.cache.views} views); live: fresh augmentation and the teacher run on every batch; mixup "
            "and cutmix: live, every batch mixed once, the teacher seeing the mixed input and both students trained "
            "on it (each variant has its own scratch control, trained on its batches). Same teacher (loaded), same "
            "student, same epochs unless the row says more, same validation split; the gain is over the variant's "
            "own control, paired by seed.\n")
    if args.key:
        replace_section(args.key, body)
    print(body)


if __name__ == "__main__":
    main()

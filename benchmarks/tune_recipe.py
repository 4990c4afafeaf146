"""`edgedistill tune` as a user runs it, on a fully labelled dataset: the recipe it finds on validation, then that
recipe against the scratch control over seeds, scored through each seed's deployed int8 file.

    python benchmarks/tune_recipe.py --set teacher.checkpoint=PATH [--config configs/fashion_mnist.yaml]
        [--trials 10] [--timeout 2700] [--seeds 3] [--methods kd,dist] [--mix none] [--rescore 3]
        [--rescore-seeds 2] [--set key=value ...]
        [--int8 onnxruntime-int8] [--out bench_runs/tune_recipe] [--key fashion_mnist_tune] [--title Fashion-MNIST]

The study runs through the CLI (`python -m edgedistill tune CONFIG --trials N --seeds S`), so the table is what a
user's study gives. Its trials see no test split; the best trial by validation accuracy (with --rescore, the best
mean over more seeds of the top trials) is run over the seeds with
its scratch control, each seed deploying both students (deploy.every_seed). Run again, the study resumes: finished
trials are kept and the confirmation is reused when it already ran.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from edgedistill.cli.seeds import mean_std, paired_gain
from edgedistill.cli.tune.report import chosen_text, rescore_table, trials_table
from edgedistill.cli.tune.rescore import Unit
from record import header, replace_section

# what studies run before tune.json named its pruning (before commit 4096f74) pruned with
MEDIAN_PRUNING = ("Optuna's median pruner stopped a trial behind the median of its epoch, from the first third of "
                  "the epochs on")

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("student_scratch", "student_kd")


def run_study(args) -> None:
    """The study and its confirmation, through the CLI; deployment sets apply to the confirmation's seeds."""
    sets = args.overrides + ["deploy.every_seed=true", f"deploy.formats=[{args.int8}]", "deploy.qat=off",
                             "deploy.roles=[student_scratch, student_kd]", "deploy.latency_runs=5"]
    cmd = [sys.executable, "-m", "edgedistill", "tune", args.config, "--out", args.out, "--trials", str(args.trials),
           "--seeds", str(args.seeds), "--quiet"] + [a for s in sets for a in ("--set", s)]
    cmd += ["--timeout", str(args.timeout)] if args.timeout else []
    cmd += ["--methods", args.methods] if args.methods else []
    cmd += ["--mix", args.mix] if args.mix else []
    cmd += ["--rescore", str(args.rescore), "--rescore-seeds", str(args.rescore_seeds)] if args.rescore else []
    subprocess.run(cmd, check=True, cwd=ROOT)


def seed_figures(out: Path, int8: str) -> list[dict]:
    """Per confirmation seed and student: validation, fp32 and int8 test accuracy."""
    figures = []
    for path in sorted((out / "confirm").glob("seed_*/metrics.json")):
        models = json.loads(path.read_text())["models"]
        figures.append({r: {"val": models[r]["train"]["best_val_accuracy"], "fp32": models[r]["test"]["accuracy"],
                            "int8": models[r]["deploy"]["formats"][int8]["test_accuracy"]} for r in ROLES})
    return figures


def cell(values: list[float]) -> str:
    a = mean_std(values)
    return f"{100 * a['mean']:.2f}% ± {100 * a['std']:.2f}"


def confirm_rows(figures: list[dict], recipe: str) -> list[str]:
    scratch = [f["student_scratch"] for f in figures]
    rows = ["| student | val acc | fp32 test acc | int8 test acc | int8 gain over scratch, paired | p | verdict |",
            "|---|---|---|---|---|---|---|"]
    for name, role in (("scratch (control)", "student_scratch"), (recipe, "student_kd")):
        runs = [f[role] for f in figures]
        gain = "- | - | -"
        if role == "student_kd":
            g = paired_gain([k["int8"] - s["int8"] for k, s in zip(runs, scratch)],
                            mean_std([s["int8"] for s in scratch])["std"])
            verdict = {1: "gain beyond the noise", -1: "loss beyond the noise", 0: "inside the noise"}[g["verdict"]]
            p = f"{g['p_value']:.3g}" if g["p_value"] is not None else "-"
            gain = f"{100 * g['mean']:+.2f} ± {100 * g['std']:.2f} | {p} | {verdict}"
        rows.append(f"| {name} | {cell([r['val'] for r in runs])} | {cell([r['fp32'] for r in runs])} | "
                    f"{cell([r['int8'] for r in runs])} | {gain} |")
    return rows


def rescoring_minutes(out: Path, rescore: dict) -> float:
    """The rescoring runs' training epochs, summed (their banks of views not counted)."""
    logs = [out / "rescore" / Unit(r["number"], seed).folder / "logs" / "student_kd.jsonl"
            for r in rescore["rows"] for seed in rescore["seeds"]]
    return sum(json.loads(line)["seconds"] for log in logs for line in log.read_text().splitlines()) / 60


def section(args, summary: dict, figures: list[dict], wall: float) -> str:
    best = summary["best"]
    settings = ", ".join(f"{k.removeprefix('distill.')}={v}" for k, v in best["settings"].items())
    recipe = f"{best['method']} ({settings or 'defaults'})"
    seconds = sum(t["seconds"] or 0 for t in summary["trials"])
    space = "; ".join(f"{m}: " + ", ".join(f"{k} {v}" for k, v in dims.items()) for m, dims in summary["space"].items())
    excluded = "; ".join(f"{m} ({why})" for m, why in summary["excluded"].items()) or "none"
    return (f"### edgedistill tune on {args.title}: the recipe found on validation against scratch ({args.seeds} "
            f"seeds)\n\n{header(wall, 'wall time of this invocation')}"
            f"- budget: {args.trials} trials of {summary['epochs_per_trial']} student epochs each"
            f"{f', no trial started after {args.timeout} s' if args.timeout else ''}; trials' own time summed: "
            f"{seconds / 60:.0f} min; {summary.get('pruning', MEDIAN_PRUNING)}\n"
            + ("- this invocation ran nothing (--gather): it read the study's tune.json and the confirmation's "
               "confirm/seed_*/metrics.json from --out\n" if args.gather else "")
            + f"- searched: {space}\n- left out: {excluded}\n"
            f"- trial states: {', '.join(f'{n} {k}' for k, n in summary['states'].items())}\n"
            f"- chosen on validation: {chosen_text(summary)}\n\n"
            + trials_table(summary["trials"]) + "\n\n"
            + (f"The best {len(summary['rescore']['rows'])} trials trained again on more seeds (same split, teacher "
               "and validation rows), the best mean over those chosen (--rescore; their training epochs summed: "
               f"{rescoring_minutes(Path(args.out), summary['rescore']):.0f} min):\n\n"
               + rescore_table(summary["rescore"]) + "\n\n" if summary.get("rescore") else "")
            + f"The chosen recipe and its scratch control over {args.seeds} seeds (the study's teacher loaded; each "
            f"seed's students scored through their {args.int8} files on the whole test split):\n\n"
            + "\n".join(confirm_rows(figures, recipe)) + "\n\n"
            "No trial reads the test split: tune replaces it with an empty one, and the seeds run only after the "
            "choice. A gain is beyond the noise when the paired t-test gives p < 0.05 and the mean gain exceeds the "
            "scratch runs' std.\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--timeout", type=int, default=0, help="seconds after which no trial starts (0: none)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="", help="the methods to search (default: every one that fits)")
    ap.add_argument("--mix", default="", help="the batch mixes to search (default: every one the data allows)")
    ap.add_argument("--rescore", type=int, default=0, help="tune --rescore: the top K trials on more seeds")
    ap.add_argument("--rescore-seeds", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--int8", default="onnxruntime-int8")
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "tune_recipe"))
    ap.add_argument("--key", default="fashion_mnist_tune")
    ap.add_argument("--title", default="Fashion-MNIST")
    ap.add_argument("--gather", action="store_true",
                    help="run nothing: write the section from --out's study and its confirm/seed_* runs, for a "
                         "confirmation whose seeds ran as processes of their own")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if not args.gather:
        run_study(args)
    summary = json.loads((Path(args.out) / "tune.json").read_text())
    figures = seed_figures(Path(args.out), args.int8)
    if len(figures) != args.seeds:
        sys.exit(f"{args.out}/confirm: {len(figures)} finished seeds, --seeds {args.seeds}")
    body = section(args, summary, figures, time.perf_counter() - t0)
    if args.key:
        replace_section(args.key, body)
    print(body)


if __name__ == "__main__":
    main()

"""Few labels, many unlabelled rows: the label share and the distillation recipe `make demo` runs, chosen on
validation alone.

    python benchmarks/few_labels.py [--config src/edgedistill/configs/default.yaml] [--shares 0.05 0.1 0.2]
        [--batches 16] [--seeds 3] [--plan 'scratch,kd,dist,...'] [--set key=value ...]
        [--int8 onnxruntime-int8] [--confirm-int8 tflm-int8] [--out bench_runs/few_labels] [--key mnist1d_few_labels]
        [--student 'convnet:channels=16,32;head=flatten'] [--title 'MNIST-1D']

A share of 1 or more is a count of labelled rows (data.labeled_count), below 1 a fraction (data.labeled_fraction).

For each label share (data.labeled_fraction: the labels of a stratified share of the training rows are kept, the
rest become the unlabelled pool), the teacher is trained once on the labelled rows, through the pipeline's own
teacher stage, with the config's seed. Then, for each student batch size, benchmarks/distill_methods.py trains the
scratch control (labelled rows) and every recipe of the plan (labelled rows plus the pool) over the seeds, from one
bank of the teacher's outputs on views of both, and scores every student through its deployed int8 file (--int8,
ONNX Runtime's by default: a TFLite Micro export costs about half a minute a model here).

Chosen on validation accuracy only (mean over the seeds; a tie goes to the better int8 file on validation): for each
share, the KD recipe and batch with the best validation accuracy, against the scratch control with the best
validation accuracy over the batches; then the share whose chosen recipe beats that scratch control by most. Test
accuracies are read for the table, never to choose.
The chosen recipe and its scratch control are then trained again over the seeds and scored through the demo's own
deliverable (--confirm-int8, TFLite Micro), with the control once more at --long-scratch times the epochs, so a
gain that comes from the control taking too few steps would show. The section of docs/benchmarks.md names the choice.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from edgedistill.atomic import atomic_write_text
from edgedistill.cli.seeds import mean_std, paired_gain
from edgedistill.config import resolve_config
from edgedistill.pipeline import model_record, prepare_in, stages
from edgedistill.roles import Role
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
STUDENT = "convnet:channels=16,32;head=flatten"


def labels_set(share: float) -> str:
    """The override that keeps this share's labels: a count from 1 up, a fraction below."""
    return f"data.labeled_count={int(share)}" if share >= 1 else f"data.labeled_fraction={share}"


def share_config(args, share: float, *extra: str):
    """The config as the share's teacher sees it: its label share is what gives teacher.train.pseudo_label a pool."""
    return resolve_config(args.config, args.overrides + [labels_set(share), *extra])


def train_teacher(args, share: float, out: Path) -> dict:
    """The share's teacher, trained on its labelled rows (and, with teacher.train.pseudo_label, on the pool as
    FixMatch does); reused when its record is there."""
    record_path = out / "teacher_metrics.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    cfg = share_config(args, share, "deploy.enabled=false")
    run = stages.teacher(prepare_in(cfg, out, progress=False))
    record = model_record(Role.TEACHER, run.trained[Role.TEACHER], run.data, run.accel)[0].to_json()
    atomic_write_text(record_path, json.dumps(record, indent=2))
    return record


def student_overrides(overrides: list[str]) -> list[str]:
    """The overrides for the students' runs, which load the trained teacher: a loaded teacher refuses
    teacher.train.pseudo_label, since how it learned is in its checkpoint."""
    return [s for s in overrides if not s.startswith("teacher.train.pseudo_label")]


def method_table(args, share: float, batch: int, teacher: Path, out: Path, plan: str, extra: list[str],
                 int8: str | None = None) -> dict:
    """distill_methods.py for one share and batch size; its results.json (it resumes where it stopped)."""
    sets = student_overrides(args.overrides) + [labels_set(share), f"teacher.checkpoint={teacher}",
                                                f"student.train.batch_size={batch}"] + extra
    cmd = [sys.executable, str(HERE / "distill_methods.py"), "--config", args.config, "--seeds", str(args.seeds),
           "--views", str(args.views), "--size", f"demo={args.student}", "--plan", f"demo:{plan}", "--key", "",
           "--out", str(out), "--int8", int8 or args.int8] + [a for s in sets for a in ("--set", s)]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())["demo"]


def val_mean(runs: dict, key: str = "best_val_accuracy") -> float:
    return mean_std([r[key] for r in runs.values()])["mean"]


def val_rank(runs: dict) -> tuple[float, float]:
    """Mean validation accuracy, ties broken by that of the int8 file, the model that ships. Rounded, since means of
    float32 accuracies that tie on the validation rows differ in the 8th digit, which would decide instead."""
    return round(val_mean(runs), 6), round(val_mean(runs, "int8_val_accuracy"), 6)


def cell(runs: dict, key: str) -> str:
    a = mean_std([r[key] for r in runs.values()])
    return f"{100 * a['mean']:.2f}% ± {100 * a['std']:.2f}"


def gain_cells(runs: dict, scratch: dict) -> str:
    """The int8 gain over the scratch control of the same batch, paired by seed, with its verdict."""
    seeds = sorted(set(runs) & set(scratch))
    sc = mean_std([scratch[s]["int8_test_accuracy"] for s in seeds])
    g = paired_gain([runs[s]["int8_test_accuracy"] - scratch[s]["int8_test_accuracy"] for s in seeds], sc["std"])
    verdict = {1: "gain beyond the noise", -1: "loss beyond the noise", 0: "inside the noise"}[g["verdict"]]
    p = f"{g['p_value']:.3g}" if g["p_value"] is not None else "-"
    return f"{100 * g['mean']:+.2f} ± {100 * g['std']:.2f} | {p} | {verdict}"


def choose(tables: dict) -> dict:
    """For one share: the best KD (batch, method) and the best scratch batch, both by mean validation accuracy."""
    kd = max(((b, m) for b, t in tables.items() for m in t if m != "scratch"), key=lambda k: val_rank(tables[k[0]][k[1]]))
    scratch = max(tables, key=lambda b: val_rank(tables[b]["scratch"]))
    gain = val_mean(tables[kd[0]][kd[1]]) - val_mean(tables[scratch]["scratch"])
    return {"batch": kd[0], "method": kd[1], "scratch_batch": scratch, "val_gain": gain}


def share_rows(share: float, tables: dict, chosen: dict) -> list[str]:
    rows = []
    for batch, table in tables.items():
        for method, runs in table.items():
            mark = " **(chosen)**" if (batch, method) == (chosen["batch"], chosen["method"]) else ""
            mark += " (best scratch)" if method == "scratch" and batch == chosen["scratch_batch"] else ""
            epoch = mean_std([r["best_epoch"] for r in runs.values()])["mean"]
            gain = "- | - | -" if method == "scratch" else gain_cells(runs, table["scratch"])
            rows.append(f"| {share:g} | {batch} | {method}{mark} | {100 * val_mean(runs):.2f}% | {epoch:.0f} | "
                        f"{cell(runs, 'test_accuracy')} | {cell(runs, 'int8_test_accuracy')} | {gain} |")
    return rows


def confirm_rows(args, share: float, c: dict, confirm: dict, long_scratch: dict) -> list[str]:
    """The chosen recipe and its control, retrained and scored through the demo's deliverable format."""
    epochs = share_config(args, share).student.train.epochs
    rows = []
    for name, runs in ((f"scratch, batch {c['batch']}", confirm["scratch"]),
                       (f"scratch, batch {c['scratch_batch']}, {args.long_scratch * epochs} epochs", long_scratch),
                       (f"{c['method']}, batch {c['batch']}", confirm[c["method"]])):
        if not runs:  # --long-scratch 0
            continue
        epoch = mean_std([r["best_epoch"] for r in runs.values()])["mean"]
        gain = gain_cells(runs, confirm["scratch"]) if name.startswith(c["method"]) else "- | - | -"
        rows.append(f"| {share:g} | {name} | {100 * val_mean(runs):.2f}% | {epoch:.0f} | {cell(runs, 'test_accuracy')} "
                    f"| {cell(runs, 'int8_test_accuracy')} | {gain} |")
    return rows


def confirmed(args) -> str:
    """How the chosen recipe's table was made: retrained for another format, or the sweep's own runs."""
    return "the sweep's own runs, scored through" if args.confirm_int8 == args.int8 else "retrained and scored through"


def trained_minutes(out: Path, teachers: dict, tables: list[dict]) -> float:
    """Every model's training time as it measured it, and every teacher-output bank's build, summed: the sweep
    resumes where it stopped, so its wall time covers only the last invocation."""
    seconds = sum(t["train"]["seconds"] for t in teachers.values() if "train" in t)
    seconds += sum(r["seconds"] for table in tables for runs in table.values() for r in runs.values())
    seconds += sum(json.loads(p.read_text())["seconds"] for p in out.glob("share_*/*/cache_build.json"))
    return seconds / 60


def teacher_row(share: float, t: dict) -> str:
    """A share's teacher: its training as it measured it, or the checkpoint it was loaded from."""
    if "train" not in t:
        return (f"| {share:g} | loaded from `{t['source'].removeprefix('loaded:')}` | - | "
                f"{100 * t['val']['accuracy']:.2f}% | {100 * t['test']['accuracy']:.2f}% |")
    return (f"| {share:g} | {t['train']['epochs']} | {t['train']['best_epoch']} | "
            f"{100 * t['train']['best_val_accuracy']:.2f}% | {100 * t['test']['accuracy']:.2f}% |")


def write_section(args, teachers: dict, results: dict, choices: dict, share: float, confirm: dict,
                  long_scratch: dict, wall: float) -> str:
    c = choices[share]
    kd, scratch = confirm[c["method"]], confirm["scratch"]
    cfg = share_config(args, share)
    epochs = cfg.student.train.epochs
    learned = ("the labelled rows and, by FixMatch's confident pseudo-labels (teacher.train.pseudo_label), the pool"
               if cfg.teacher.train.pseudo_label else "the labelled rows only")
    tables = [t for by_batch in results.values() for t in by_batch.values()] + [confirm, {"scratch": long_scratch}]
    rows = ["| share | batch | recipe | val acc (mean) | best epoch (mean) | fp32 test acc | int8 test acc | "
            "int8 gain over scratch (same batch), paired | p | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in results:
        rows += share_rows(s, results[s], choices[s])
    teacher_rows = "\n".join(teacher_row(s, t) for s, t in teachers.items())
    acc = {name: mean_std([r["int8_test_accuracy"] for r in runs.values()])["mean"]
           for name, runs in (("kd", kd), ("scratch", scratch), ("long", long_scratch)) if runs}
    longer = (f"the control with the best validation accuracy (batch {c['scratch_batch']}) trained "
              f"{args.long_scratch}x as long scores {100 * acc['long']:.2f}%" if long_scratch else
              "the control was not trained longer here (--long-scratch 0)")
    body = (f"### Few labels: {args.title} with a share of its labels, the rest as the unlabelled pool ({args.seeds} "
            f"seeds, {epochs} student epochs)\n\n{header(wall, 'wall time of this invocation')}"
            f"- training time of every model in the tables and every teacher-output bank, as each measured it, "
            f"summed: {trained_minutes(Path(args.out), teachers, tables):.0f} min (the sweep resumes where it "
            "stopped; int8 export and scoring not included)\n"
            f"- config: `{Path(args.config).name}`{' with ' + ', '.join(args.overrides) if args.overrides else ''}; "
            f"student `{args.student}`; {args.views} cached views; int8: {args.int8}\n"
            f"- chosen on validation: label share **{share:g}**, recipe **{c['method']}** at batch "
            f"{c['batch']} (validation gain over the best scratch control: {100 * c['val_gain']:+.2f} points; "
            "per share: " + ", ".join(f"{s:g}: {v['method']} b{v['batch']} {100 * v['val_gain']:+.2f}"
                                      for s, v in choices.items()) + ")\n"
            f"- {confirmed(args)} {args.confirm_int8}: {100 * acc['kd']:.2f}% against "
            f"{100 * acc['scratch']:.2f}% for the scratch control at the same batch (the KD student keeps "
            f"{100 * acc['kd'] / teachers[share]['test']['accuracy']:.2f}% of the teacher's test accuracy), "
            f"{gain_cells(kd, scratch).replace(' | ', ', p = ', 1).replace(' | ', ': ')}; {longer}\n\n"
            f"Teachers, one per share, trained on {learned} (seed 0) unless loaded from a checkpoint:\n\n"
            "| share | epochs | best epoch | val acc | test acc |\n|---|---|---|---|---|\n" + teacher_rows + "\n\n"
            + "\n".join(rows) + "\n\n"
            f"The chosen recipe, {confirmed(args)} {args.confirm_int8}:\n\n"
            "| share | student | val acc (mean) | best epoch (mean) | fp32 test acc | int8 test acc | int8 gain over "
            "scratch, paired | p | verdict |\n|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(confirm_rows(args, share, c, confirm, long_scratch)) + "\n\n"
            "Validation is carved from the training split before the label share is drawn, so every share and "
            "seed is judged on the same labelled validation rows. The scratch control trains on the labelled rows; each "
            "recipe on the labelled rows (its hard-label term) and the pool (its distillation terms only), in the "
            "control's steps. Each seed changes the students' initial weights, batch order and view choice; the "
            "label share and the views are those of seed 0 for every seed. A gain is beyond the noise when the "
            "paired t-test gives p < 0.05 and the mean gain exceeds the scratch runs' std.\n")
    if args.key:
        replace_section(args.key, body)
    return body


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "src" / "edgedistill" / "configs" / "default.yaml"))
    ap.add_argument("--shares", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--batches", type=int, nargs="+", default=[16],
                    help="student batch sizes to compare (each its own scratch control); 16 gives the 360 labelled "
                         "rows of a 10%% share 23 steps an epoch")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--plan", default="scratch,kd,kd(alpha=1.0,temperature=4),dist")
    ap.add_argument("--long-scratch", type=int, default=4,
                    help="the chosen control again, this many times the epochs (0: not run)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--int8", default="onnxruntime-int8", help="the format every student of the sweep is scored in")
    ap.add_argument("--confirm-int8", default="tflm-int8", help="the format the chosen recipe is scored in; the "
                    "sweep's own format reuses the sweep's runs rather than training them again")
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "few_labels"))
    ap.add_argument("--key", default="mnist1d_few_labels")
    ap.add_argument("--student", default=STUDENT, help="the student, as benchmarks/distill_methods.py's --size takes it")
    ap.add_argument("--title", default="MNIST-1D", help="the dataset's name in the section's title")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    teachers, results, choices = {}, {}, {}
    for share in args.shares:
        folder = out / f"share_{share:g}"
        folder.mkdir(parents=True, exist_ok=True)
        teachers[share] = train_teacher(args, share, folder)
        print(f"share {share}: teacher {teachers[share]['test']['accuracy']:.4f}", flush=True)
        results[share] = {b: method_table(args, share, b, folder / "teacher.pt", folder / f"batch_{b}", args.plan, [])
                          for b in args.batches}
        choices[share] = choose(results[share])
        print(f"share {share}: {choices[share]}", flush=True)
    share = max(choices, key=lambda s: choices[s]["val_gain"])
    c = choices[share]
    epochs = share_config(args, share).student.train.epochs
    folder = out / f"share_{share:g}"
    # in the sweep's own format the retrained runs would be the sweep's (same seeds and recipe): read them back
    again = folder / (f"batch_{c['batch']}" if args.confirm_int8 == args.int8 else f"confirm_{c['batch']}")
    confirm = method_table(args, share, c["batch"], folder / "teacher.pt", again, f"scratch,{c['method']}", [],
                           args.confirm_int8)
    long_scratch = method_table(args, share, c["scratch_batch"], folder / "teacher.pt",
                                folder / f"confirm_{c['scratch_batch']}_long", "scratch",
                                [f"student.train.epochs={args.long_scratch * epochs}"],
                                args.confirm_int8)["scratch"] if args.long_scratch else {}
    print(write_section(args, teachers, results, choices, share, confirm, long_scratch, time.perf_counter() - t0))


if __name__ == "__main__":
    main()

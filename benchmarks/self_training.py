"""Self-training: a teacher that learns from the unlabelled pool too, for a student with few labels.

    python benchmarks/self_training.py [--config configs/fashion_mnist.yaml] [--share 1000] [--rounds 2]
        [--round-epochs 100] [--model 'convnet:channels=32,48,56;convs_per_stage=2;head=avg']
        [--set key=value ...] [--out bench_runs/self_training] [--key fashion_mnist_self_training]
        [--title 'Fashion-MNIST, 1,000 labels']

A teacher trained on 1,000 labels can be no better than the student trained on them (Fashion-MNIST, 2026-12-05: 84.87%
against 85.04%, docs/benchmarks.md), so distilling it over the pool gains nothing. Round 0 trains the teacher on the
labelled rows (the pipeline's teacher stage). Round k distils round k-1's model into a fresh model (the teacher's
architecture, or --model: the edge student itself is far cheaper on a CPU) on the labelled rows plus the pool
(`edgedistill run` with student.model set to it), as self-training does (Xie et al., Noisy Student, CVPR 2020; Chen et
al., SimCLRv2's self-distillation, NeurIPS 2020). The round with the best validation accuracy is the teacher that
benchmarks/few_labels.py then distils into the edge student (the overrides it needs are in chosen_teacher.json). A
teacher given with --set teacher.checkpoint=... is round 0 and is not retrained. Test accuracy is read for the table
only, never to choose.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from edgedistill.atomic import atomic_write_text
from edgedistill.config import resolve_config
from distill_methods import parse_student
from few_labels import labels_set
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent


def round_overrides(args, k: int, previous: Path | None) -> list[str]:
    """Round k's run: the labelled share, no deployment, and a student that is the round model (--model, trained as
    the config's student is; by default the teacher's model, trained as the teacher is) for --round-epochs with the
    student's pool batch. From round 2 on, the previous round's model teaches."""
    cfg = resolve_config(args.config, args.overrides)
    if args.model:
        family, model_args = parse_student(args.model)
        train = cfg.student.train.model_dump(mode="json")
    else:
        family, model_args = cfg.teacher.model, cfg.teacher.args
        train = cfg.teacher.train.model_dump(mode="json") | {"pool_batch": cfg.student.train.pool_batch}
    model = [f"model={family}", f"args={json.dumps(model_args)}"]
    sets = args.overrides + [labels_set(args.share), "deploy.enabled=false"] + [f"student.{m}" for m in model]
    sets.append(f"student.train={json.dumps(train | {'epochs': args.round_epochs})}")
    if previous is not None:
        sets += [f"teacher.{m}" for m in model] + [f"teacher.checkpoint={previous}"]
    return sets


def run_round(args, k: int, previous: Path | None) -> dict:
    """`edgedistill run` for round k (k >= 1): round k-1's model teaches; round 1 trains round 0 as its teacher.
    Its metrics.json, reused when the round already finished."""
    out = Path(args.out) / f"round_{k}"
    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    sets = round_overrides(args, k, previous)
    cmd = [sys.executable, "-m", "edgedistill", "run", args.config, "--out", str(out), "--overwrite", "--quiet"]
    subprocess.run(cmd + [a for s in sets for a in ("--set", s)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def row(k: int, name: str, record: dict, checkpoint: Path) -> dict:
    """One model of the chain as metrics.json records it: accuracies, rows seen, and where its weights are."""
    train = record.get("train", {})
    rows = train.get("rows_per_epoch", {})
    return {"round": k, "model": name, "args": record["args"], "checkpoint": str(checkpoint),
            "source": record.get("source", "trained"), "val": record["val"]["accuracy"],
            "test": record["test"]["accuracy"], "seconds": train.get("seconds"),
            "labeled": rows.get("labeled"), "unlabeled": rows.get("unlabeled")}


def section(args, rounds: list[dict], scratch: dict, chosen: dict, wall: float) -> str:
    """The chain's table for docs/benchmarks.md, with the recipe every round distils by."""
    distill = resolve_config(args.config, args.overrides).distill
    recipe = f"- each round: {args.round_epochs} epochs of distill.method {distill.method} as the config sets it\n"
    lines = [f"### Self-training the teacher on the pool: {args.title}", "", header(wall) + recipe,
             "| round | model | taught by | labelled rows | unlabelled rows / epoch | val acc | test acc | "
             "train time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        taught = f"round {r['round'] - 1}" if r["round"] else "labels alone"
        if r["source"].startswith("loaded:"):
            taught = f"loaded from `{r['source'].removeprefix('loaded:')}`"
        secs = f"{r['seconds'] / 60:.1f} min" if r["seconds"] else "-"
        lines.append(f"| {r['round']} | {r['model']} | {taught} | {r['labeled'] or '-'} | {r['unlabeled'] or 0} | "
                     f"{r['val']:.2%} | {r['test']:.2%} | {secs} |")
    lines.append(f"| - | {scratch['model']} from scratch (labels alone, round 1's schedule) | - | "
                 f"{scratch['labeled'] or '-'} | 0 | {scratch['val']:.2%} | {scratch['test']:.2%} | - |")
    lines += ["", f"Chosen on validation: round {chosen['round']} ({chosen['val']:.2%} validation), the teacher "
              f"benchmarks/few_labels.py distils. One seed per round."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    ap.add_argument("--share", type=float, default=1000, help="labelled rows (1 or more) or fraction (below 1)")
    ap.add_argument("--rounds", type=int, default=2, help="distillation rounds after the teacher trained on labels")
    ap.add_argument("--round-epochs", type=int, default=100)
    ap.add_argument("--model", default="", help="the rounds' model, as distill_methods.py's --size takes it (default: "
                                                 "the teacher's); the edge student itself makes each round cheap")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "self_training"))
    ap.add_argument("--key", default="fashion_mnist_self_training")
    ap.add_argument("--title", default="Fashion-MNIST, 1,000 labels")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds: give 1 or more")
    t0 = time.perf_counter()
    rounds, previous, scratch = [], None, None
    for k in range(1, args.rounds + 1):
        metrics = run_round(args, k, previous)
        folder = Path(args.out) / f"round_{k}"
        models = metrics["models"]
        if k == 1:
            rounds.append(row(0, models["teacher"]["model"], models["teacher"], folder / "teacher.pt"))
            scratch = row(-1, models["student_scratch"]["model"], models["student_scratch"],
                          folder / "student_scratch.pt")
        previous = folder / "student_kd.pt"
        rounds.append(row(k, models["student_kd"]["model"], models["student_kd"], previous))
        print(f"round {k}: val {rounds[-1]['val']:.4f} test {rounds[-1]['test']:.4f} "
              f"(round 0 val {rounds[0]['val']:.4f})", flush=True)
    chosen = max(rounds, key=lambda r: r["val"])
    chosen["overrides"] = [f"teacher.model={chosen['model']}", f"teacher.args={json.dumps(chosen['args'])}",
                           f"teacher.checkpoint={chosen['checkpoint']}"]
    atomic_write_text(Path(args.out) / "chosen_teacher.json", json.dumps({"chosen": chosen, "rounds": rounds,
                                                                          "scratch": scratch}, indent=2))
    text = section(args, rounds, scratch, chosen, time.perf_counter() - t0)
    replace_section(args.key, text)
    print(text)


if __name__ == "__main__":
    main()

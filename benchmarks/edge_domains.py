"""Edge domains: sensor time series (UCR/UEA via aeon) and medical tables, each run end to end from its config.

    python benchmarks/edge_domains.py [--only basic_motions,italy_power_demand,...] [--out bench_runs/domains]

For every set: the teacher, the student trained from scratch and by KD, the KD student's int8 accuracy through ONNX
Runtime and its fit on the config's device, beside a reference: the published accuracy for the time-series sets
(2023 bake-off, official split), and for the tables a logistic regression this script fits on the same training
split. Tables also list the recall of the class that matters for diagnosis. Each set is one row, rewritten as soon
as it finishes; a set already run in OUT is read back, not rerun.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from edgedistill.config import resolve_config
from edgedistill.deploy.fit import fit_sentence
from edgedistill.pipeline import load_data
from edgedistill.report import read_metrics
from edgedistill.roles import COMPARED
import edgedistill
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent
# config -> (published reference, the class whose recall matters or None)
SETS = {
    "basic_motions": ("ROCKET 1.000", None),
    "italy_power_demand": ("ROCKET 0.970, InceptionTime 0.966", None),
    "osu_leaf": ("ROCKET 0.942, ResNet 0.979", None),
    "acsf1": ("ROCKET 0.880, InceptionTime 0.910", None),
    "japanese_vowels": ("none given in the issue", None),
    "pima": (None, "Yes"),
    "breast_cancer": (None, "malignant"),
}


def logistic_baseline(cfg: dict) -> str:
    """Logistic regression on the run's own training split (validation included), scored on its test split."""
    d = load_data(resolve_config(cfg))  # the pipeline's own split: options, limits and data.split_seed
    clf = LogisticRegression(max_iter=2000).fit(np.concatenate([d.x_train, d.x_val]),
                                                np.concatenate([d.y_train, d.y_val]))
    return f"logistic regression {clf.score(d.x_test, d.y_test):.3f} (measured here)"


def row(name: str, m: dict, reference: str, positive: str | None) -> str:
    t, s, k = (m["models"][r] for r in COMPARED)
    qat = m["models"].get("student_kd_qat")  # deploy.qat: the quantization-aware KD student is the one to ship
    dep = (qat or k).get("deploy", {})
    chosen = dep.get("preferred", "")  # the device's own int8 format (tflm-int8 on the MCU profiles)
    int8 = dep.get("formats", {}).get(chosen, {})
    fit = dep.get("fit", {}).get(chosen, {})
    acc = lambda r: f"{100 * r['test']['accuracy']:.2f}%"  # noqa: E731
    recall = (f" / {s['test']['per_class'][positive]['recall']:.3f} / {k['test']['per_class'][positive]['recall']:.3f}"
              if positive else "")
    verdict = fit_sentence(fit) if fit else "-"
    gap = 100 * (t["test"]["accuracy"] - int8.get("test_accuracy", float("nan")))
    loaded = m["config"]["teacher"].get("checkpoint")  # a rerun of the students only says whose teacher it reused
    teacher = f"{t['model']} {t['params']:,}: {acc(t)}" + (f" (loaded from `{loaded}`)" if loaded else "")
    return (f"| {name} ({m['created'][5:16].replace('T', ' ')}) | {m['device']['name']} | {reference} | {teacher} | "
            f"{k['model']} {k['params']:,} ({t['params'] / k['params']:.0f}x fewer) | {acc(s)} | {acc(k)} | "
            f"{100 * int8.get('test_accuracy', float('nan')):.2f}%{' ' + chosen}{' after QAT' if qat else ''}"
            f"{', 16-bit input' if int8.get('input_bits') == 16 else ''} "
            f"({gap:.2f} pts under the teacher) | "
            f"{int8.get('file_bytes', 0) / 1024:.1f} KB, {verdict} |"
            + (f" {positive}: {t['test']['per_class'][positive]['recall']:.3f}{recall} |" if positive else " - |"))


def table(out: Path, wall: float) -> str:
    """One row per set with a finished run in OUT, whichever invocation ran it."""
    rows = []
    for name, (published, positive) in SETS.items():
        if (out / name / "metrics.json").exists():
            m = read_metrics(out / name)  # an older (schema 1) file is migrated on reading
            rows.append(row(name, m, published or logistic_baseline(m["config"]), positive))
    return ("### Edge domains: sensor time series and medical tables\n\n" + header(wall, "wall time of the last call")
            + "- each row is read from bench_runs/domains/<set>/metrics.json and dated by its own run (UTC); the "
              "command above is the last call, earlier ones differed only in `--only` and in the teacher checkpoint "
              "a row names\n"
            + "- each set is `edgedistill run configs/<set>.yaml`, one seed; test accuracy of the kept weights "
              "(`train.keep: last`: these validation splits hold 4-30 samples, too few to choose an epoch on)\n\n"
              "| set | device | reference | teacher: test acc | KD student | scratch | KD | KD int8 through its runtime "
              "| int8 file, fit | recall of the diagnosis: teacher / scratch / KD |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(SETS))
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "domains"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    t0 = time.perf_counter()
    for name in args.only.split(","):
        out = Path(args.out) / name
        if not (out / "metrics.json").exists():
            edgedistill.run(ROOT / "configs" / f"{name}.yaml", out_dir=out, overrides=args.overrides, overwrite=True,
                            progress=False)
        body = table(Path(args.out), time.perf_counter() - t0)
        replace_section("edge_domains", body)
    print(body)


if __name__ == "__main__":
    main()

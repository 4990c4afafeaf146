"""report.md: the teacher / scratch student / KD student table, the KD gain, and what each student lost per class."""
from __future__ import annotations

from pathlib import Path

from edgedistill.checkpoint import atomic_write_text

LABELS = {"teacher": "teacher", "student_scratch": "student (scratch)", "student_kd": "student (KD)"}


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 1024**2 else f"{n / 1024**2:.2f} MB"


def comparison_table(metrics: dict) -> str:
    models = metrics["models"]
    teacher = models["teacher"]
    scratch_acc = models["student_scratch"]["test"]["accuracy"]
    rows = ["| model | arch | test acc | precision | recall | F1 | params | size fp32 | compression | vs scratch |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for role, label in LABELS.items():
        m = models[role]
        t = m["test"]
        ratio = teacher["params"] / max(m["params"], 1)
        gain = "" if role == "teacher" else f"{100 * (t['accuracy'] - scratch_acc):+.2f} pts"
        rows.append(f"| {label} | {m['model']} | {100 * t['accuracy']:.2f}% | {t['precision_macro']:.4f} | "
                    f"{t['recall_macro']:.4f} | {t['f1_macro']:.4f} | {m['params']:,} | {_kb(m['size_fp32_bytes'])} | "
                    f"{ratio:.1f}x | {gain} |")
    return "\n".join(rows)


def verdict(metrics: dict) -> str:
    c = metrics["comparison"]
    gain = 100 * c["kd_gain_over_scratch"]
    helped = "helped" if gain > 0 else "did not help"
    return (f"Distillation {helped}: the KD student scores {gain:+.2f} points against the same student trained from "
            f"scratch (one seed, so a gain this size may be noise), and {100 * c['kd_accuracy_drop_vs_teacher']:.2f} "
            f"points below the teacher with {c['compression_ratio_params']:.1f}x fewer parameters.")


def per_class_table(metrics: dict) -> str:
    models = metrics["models"]
    names = list(models["teacher"]["test"]["per_class"])
    rows = ["| class | teacher F1 | scratch F1 | KD F1 | KD recall |", "|---|---|---|---|---|"]
    for name in names:
        f1 = [models[r]["test"]["per_class"][name]["f1"] for r in LABELS]
        recall = models["student_kd"]["test"]["per_class"][name]["recall"]
        rows.append(f"| {name} | {f1[0]:.3f} | {f1[1]:.3f} | {f1[2]:.3f} | {recall:.3f} |")
    return "\n".join(rows)


def write_report_md(path: Path, metrics: dict) -> None:
    ds = metrics["dataset"]
    env = metrics["environment"]
    d = metrics["config"]["distill"]
    text = f"""# edgedistill run: {metrics['name']}

Dataset: {ds['description']} — {ds['n_train']} train / {ds['n_val']} validation (carved from train) / \
{ds['n_test']} test, {ds['num_classes']} classes, input {tuple(ds['input_shape'])}.
Distillation: {d['method']} (temperature {d['temperature']}, alpha {d['alpha']}). Seed {metrics['config']['seed']}.
Machine: {env['platform']}, torch {env['torch']}, {env['accelerator']}{' (' + env['gpu'] + ')' if env['gpu'] else ''}.
Created {metrics['created']}. Checkpoints keep the best validation epoch; the test set chose nothing.

## Comparison (test set)

{comparison_table(metrics)}

{verdict(metrics)}

## Per class (test F1)

{per_class_table(metrics)}
"""
    atomic_write_text(path, text)

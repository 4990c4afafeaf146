"""report.md: the teacher / scratch student / KD student table, the KD gain, and what each student lost per class."""
from __future__ import annotations

from pathlib import Path

from edgedistill.atomic import atomic_write_text
from edgedistill.deploy.fit import fit_sentence, fit_summary, fit_word
from edgedistill.distill import describe
from edgedistill.roles import COMPARED, LABELS, Role
from edgedistill.units import human_bytes as _kb


def method_label(distill: dict) -> str:
    """The distillation recipe in words, e.g. 'kd (T=4.0, alpha=0.9) + at (weight 1000.0, p=2.0)', and distill.mix
    where it was on: the scratch control trained on mixed batches too, which changes what the gain is measured on."""
    mix = distill.get("mix") or {}
    if mix.get("kind", "none") == "none":
        return describe(distill)
    return f"{describe(distill)}, {mix['kind']} (alpha={mix.get('alpha')}) on the batches of both students"


def comparison_table(metrics: dict) -> str:
    models = metrics["models"]
    teacher = models[Role.TEACHER]
    scratch_acc = models[Role.STUDENT_SCRATCH]["test"]["accuracy"]
    rows = ["| model | arch | test acc | precision | recall | F1 | params | size fp32 | compression | vs scratch |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for role, label in LABELS.items():
        if role not in models:
            continue
        m = models[role]
        t = m["test"]
        ratio = teacher["params"] / max(m["params"], 1)
        gain = "" if role == Role.TEACHER else f"{100 * (t['accuracy'] - scratch_acc):+.2f} pts"
        rows.append(f"| {label} | {m['model']} | {100 * t['accuracy']:.2f}% | {t['precision_macro']:.4f} | "
                    f"{t['recall_macro']:.4f} | {t['f1_macro']:.4f} | {m['params']:,} | {_kb(m['size_fp32_bytes'])} | "
                    f"{ratio:.1f}x | {gain} |")
    return "\n".join(rows)


def verdict(metrics: dict) -> str:
    c = metrics["comparison"]
    gain = 100 * c["kd_gain_over_scratch"]
    helped = "helped" if gain > 0 else "did not help"
    weak = weak_teacher(metrics)
    return (f"Distillation {helped}: the KD student scores {gain:+.2f} points against the same student trained from "
            f"scratch (one seed, so a gain this size may be noise), and {100 * c['kd_accuracy_drop_vs_teacher']:.2f} "
            f"points below the teacher with {c['compression_ratio_params']:.1f}x fewer parameters."
            + (f" {weak}" if weak else ""))


def weak_teacher(metrics: dict) -> str:
    """A teacher under the student trained alone, on validation, is the first reason to suspect when KD loses: the
    KD student learns the teacher's outputs. Empty when the teacher leads (or a record has no validation score)."""
    models = metrics["models"]
    teacher, scratch = (models[role].get("val", {}).get("accuracy") for role in (Role.TEACHER, Role.STUDENT_SCRATCH))
    if teacher is None or scratch is None or teacher >= scratch:
        return ""
    pool = " or let it learn from the unlabelled pool (teacher.train.pseudo_label)" \
        if metrics["dataset"].get("n_unlabeled") else ""
    return (f"The teacher scores {100 * teacher:.2f}% on validation, {100 * (scratch - teacher):.2f} points under the "
            f"student trained from scratch ({100 * scratch:.2f}%): the KD student learns the teacher's outputs, so "
            f"it can be pulled toward the teacher's errors. Train the teacher longer (teacher.train){pool}, or choose "
            "a stronger one (teacher.model, teacher.args).")


def pool_note(metrics: dict) -> str:
    """Where the unlabelled rows came from, and who learns from them: the students, and the teacher where its own
    training record counts unlabelled rows."""
    dataset = metrics["dataset"]
    n, pool = dataset.get("n_unlabeled", 0), dataset.get("unlabeled") or {}
    if not n:
        return ""
    parts = []
    if pool.get("held_out"):
        share = (f"data.labeled_fraction {pool['labeled_fraction']}" if pool.get("labeled_fraction") is not None
                 else f"data.labeled_count {pool.get('labeled_count')}")
        parts.append(f"{pool['held_out']:,} training rows whose labels were set aside ({share}, a stratified "
                     "draw by the split seed)")
    if pool.get("file"):
        parts.append(f"{pool['file']:,} rows of {pool.get('path')} (data.unlabeled)")
    teacher = (" The teacher trained on it too, toward its own confident predictions (teacher.train.pseudo_label, "
               "FixMatch)." if self_taught(metrics) else "")
    return (f"Unlabelled pool: {n:,} rows: {' and '.join(parts)}. The students taught by the teacher train on it, "
            "through the distillation terms alone (no hard-label term), spread over the steps the labelled rows "
            f"take, so they take as many steps per epoch as the scratch control.{teacher}")


def self_taught(metrics: dict) -> bool:
    """Whether the teacher trained on unlabelled rows, as its own training record says."""
    return bool(rows_by_role(metrics["models"]).get("teacher", {}).get("unlabeled"))


def rows_by_role(models: dict) -> dict[str, dict]:
    """Each trained model's rows per epoch (its last epoch's count), where metrics.json records it."""
    return {role: m["train"]["rows_per_epoch"] for role, m in models.items()
            if (m.get("train") or {}).get("rows_per_epoch")}


def rows_sentence(rows: dict[str, dict]) -> str:
    """How many labelled and unlabelled rows each trained model took per epoch."""
    parts = []
    for role, name in LABELS.items():
        if role in rows:
            more = f" + {rows[role]['unlabeled']:,} unlabelled" if rows[role]["unlabeled"] else ""
            parts.append(f"{name} {rows[role]['labeled']:,} labelled{more}")
    return f"Training rows per epoch: {'; '.join(parts)}." if parts else ""


def training_rows(metrics: dict) -> str:
    return rows_sentence(rows_by_role(metrics["models"]))


def absent_note(metrics: dict) -> str:
    """Classes the test split lacks are left out of the macro averages; say so rather than count them as 0."""
    absent = metrics["models"][Role.TEACHER]["test"].get("absent_classes") or []
    if not absent:
        return ""
    return (f"The test split has no sample of class{'es' if len(absent) > 1 else ''} {', '.join(absent)}: macro "
            "precision, recall and F1 average over the classes it holds.\n\n")


def per_class_table(metrics: dict) -> str:
    models = metrics["models"]
    names = list(models[Role.TEACHER]["test"]["per_class"])
    rows = ["| class | teacher F1 | scratch F1 | KD F1 | KD recall |", "|---|---|---|---|---|"]
    for name in names:
        f1 = [models[r]["test"]["per_class"][name]["f1"] for r in COMPARED]
        recall = models[Role.STUDENT_KD]["test"]["per_class"][name]["recall"]
        rows.append(f"| {name} | {f1[0]:.3f} | {f1[1]:.3f} | {f1[2]:.3f} | {recall:.3f} |")
    return "\n".join(rows)


def _ram_cell(f: dict) -> str:
    """Measured RAM (the runtime's arena, Vela's SRAM) beside the graph-walk estimate, so its error shows."""
    measured = f.get("npu", {}).get("sram_bytes", f.get("measured_ram_bytes"))
    est = _kb(f["peak_activation_bytes"])
    return f"{_kb(measured)} measured / {est} est." if measured is not None else f"{est} est."


def _latency_cell(f: dict) -> str:
    lat = f["host_latency"]
    cell = f"{lat['latency_p50_ms']:.3f} / {lat['latency_p95_ms']:.3f} ms ({lat['threads']} thr)"
    return cell + (" reference kernels" if lat.get("meaningful") is False else "")


def deployment_table(metrics: dict) -> str:
    """One row per exported file: accuracy through its own runtime, bytes, MACs, RAM, host latency, fit verdict."""
    device = metrics["device"]["name"]
    rows = [f"| model | format | test acc (runtime) | file | MACs | RAM (activations) | p50 / p95 latency (host) | "
            f"throughput | {device} |", "|---|---|---|---|---|---|---|---|---|"]
    for role, label in LABELS.items():
        dep = metrics["models"].get(role, {}).get("deploy")
        if not dep:
            skipped = metrics["models"].get(role, {}).get("deploy_skipped")  # an ONNX or ensemble teacher
            rows += [f"| {label} | - | not exported: {skipped} | | | | | | |"] if skipped else []
            continue
        if "error" in dep:
            rows.append(f"| {label} | - | export failed: {dep['error']} | | | | | | |")
            continue
        for key, f in dep["formats"].items():
            lat = f["host_latency"]
            shown = f"{key} (16-bit input)" if f.get("input_bits") == 16 else key
            rows.append(f"| {label} | {shown} | {100 * f['test_accuracy']:.2f}% | {_kb(f['file_bytes'])} | "
                        f"{dep['macs'] / 1e6:.2f}M | {_ram_cell(f)} | {_latency_cell(f)} | "
                        f"{lat['throughput_per_s']:,.0f}/s (b{lat['throughput_batch']}) | {fit_sentence(dep['fit'][key])} |")
        for key, why in dep.get("failed", {}).items():
            rows.append(f"| {label} | {key} | not exported: {why} | | | | | | |")
    return "\n".join(rows)


def deliverables(metrics: dict) -> str:
    """Where the files a device loads are, with the C source for a microcontroller."""
    lines = []
    for role, label in LABELS.items():
        dep = metrics["models"].get(role, {}).get("deploy") or {}
        for key, f in dep.get("formats", {}).items():
            extra = f" + {', '.join(f['files'])}" if f.get("files") else ""
            if f.get("deliverable"):  # an NPU loads Vela's compiled file; the uncompiled one is what TFLM scored
                lines.append(f"- {label}, {key}: `export/{f['deliverable']}`{extra} (compiled by Vela for "
                             f"{f['npu']['accelerator']} from `export/{f['file']}`)")
                continue
            lines.append(f"- {label}, {key}: `export/{f['file']}`{extra}")
    return "\n".join(lines)


def missing_deliverable(metrics: dict) -> str | None:
    """Why a run that was to hand over a file for the device (deployment on, the KD student among deploy.roles)
    has none; None when it has one or was not asked for one."""
    dc = metrics["config"].get("deploy", {})
    roles = dc.get("roles")
    dep = metrics["models"][Role.STUDENT_KD].get("deploy")
    if not dc.get("enabled", True) or (roles is not None and Role.STUDENT_KD not in roles) or not dep \
            or "error" not in dep:
        return None
    return (f"no deliverable: the KD student could not be exported for device {metrics['device']['name']!r} "
            f"({dep['error']}); the trained models are kept in the run folder")


def search_section(metrics: dict) -> str:
    """student: auto, trial by trial: what was tried, whether it fit the device, and its validation accuracy."""
    search = metrics.get("student_search")
    if not search:
        return ""
    b = search["budget"]
    rows = ["| trial | args | params | fits | file | RAM | latency | val acc | seconds |",
            "|---|---|---|---|---|---|---|---|---|"]
    for t in search["trials"]:
        if "fits" not in t:
            continue
        if "error" in t:
            rows.append(f"| {t['number']} | {t['args']} | - | no: {t['error']} | - | - | - | - | - |")
            continue
        lat = f"{t['latency_ms']:.1f} ms" if t.get("latency_ms") is not None else "-"
        fits = fit_word(t["fits"]) + (": " + "; ".join(t["overflows"]) if t["overflows"] else "")
        acc = f"{100 * t['val_accuracy']:.2f}%" if "val_accuracy" in t else "-"
        mark = " (chosen)" if t["number"] == search["best_trial"] else ""
        rows.append(f"| {t['number']}{mark} | {t['args']} | {t['params']:,} | {fits} | {_kb(t['file_bytes'])} | "
                    f"{_kb(t['ram_bytes'])} | {lat} | {acc} | {t.get('seconds', 0):.1f} |")
    return (f"## Student search (student: auto)\n\nOptuna TPE over `{search['family']}`, at most {b['trials']} trials "
            f"and {b['timeout_s']:.0f} s, {b['epochs_per_trial']} epochs per trial, scored on validation; it took "
            f"{search['seconds']:.0f} s. Students that do not fit the device are not trained.\n\n"
            + "\n".join(rows) + "\n\n")


def write_report_md(path: Path, metrics: dict) -> None:
    ds = metrics["dataset"]
    env = metrics["environment"]
    d = metrics["config"]["distill"]
    missing = missing_deliverable(metrics)
    lead = f"**{missing[0].upper() + missing[1:]}.**\n\n" if missing else ""
    unlabeled = f" labelled + {ds['n_unlabeled']:,} unlabelled" if ds.get("n_unlabeled") else ""
    rows_lines = "\n".join(line for line in (pool_note(metrics), training_rows(metrics)) if line)
    text = f"""# edgedistill run: {metrics['name']}

{lead}Dataset: {ds['description']} — {ds['n_train']} train{unlabeled} / {ds['n_val']} validation (carved from train) / \
{ds['n_test']} test, {ds['num_classes']} classes, input {tuple(ds['input_shape'])}.
{rows_lines}
Distillation: {method_label(d)}. Seed {metrics['config']['seed']}.
Machine: {env['platform']}, torch {env['torch']}, {env['accelerator']}{' (' + env['gpu'] + ')' if env['gpu'] else ''}.
Created {metrics['created']}. Checkpoints keep the best validation epoch; the test set chose nothing.

## Comparison (test set)

{comparison_table(metrics)}

{absent_note(metrics)}{verdict(metrics)}

## Deployment

{fit_summary(metrics) if metrics['models'][Role.STUDENT_KD].get('deploy') else 'Deployment was switched off (deploy.enabled: false).'}

{deployment_table(metrics) if metrics['models'][Role.STUDENT_KD].get('deploy') else ''}

{deliverables(metrics)}

Accuracy and latency are measured on this host through each file's own runtime, at batch 1 with the device's core
count (TFLite Micro runs its reference kernels here, so its host latency is no device figure). On-device latency in
the fit check is estimated from MACs and the device's throughput ({metrics['device']['macs_source'].strip()}),
unless a compiler (Vela) or this host measured it; a calibrated Cortex-M estimate is a range, judged at its slow end. RAM is measured where a runtime reports it (TFLite Micro's tensor
arena, Vela's SRAM); the estimate beside it is the largest live set of activation tensors along the graph at batch 1
(int8: one byte per element, two for a 16-bit input).

{search_section(metrics)}## Per class (test F1)

{per_class_table(metrics)}
"""
    atomic_write_text(path, text)

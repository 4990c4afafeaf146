"""report.md: the teacher / scratch student / KD student table, the KD gain, and what each student lost per class."""
from __future__ import annotations

from pathlib import Path

from edgedistill.checkpoint import atomic_write_text

LABELS = {"teacher": "teacher", "student_scratch": "student (scratch)", "student_kd": "student (KD)",
          "student_pruned": "pruned teacher (KD)", "student_kd_qat": "student (KD + QAT)"}


def method_label(distill: dict) -> str:
    """The distillation recipe in words, e.g. 'kd (T=4.0, alpha=0.9) + at (weight 1000.0, p=2.0)'."""
    methods = [distill["method"]] if isinstance(distill["method"], str) else distill["method"]
    parts = []
    for m in methods:
        if m == "dkd":
            d = distill["dkd"]
            parts.append(f"dkd (T={distill['temperature']}, alpha={d['alpha']}, beta={d['beta']}, "
                         f"CE weight {d['ce_weight']})")
        elif m == "kd":
            parts.append(f"kd (T={distill['temperature']}, alpha={distill['alpha']})")
        elif m == "fitnets":
            parts.append(f"fitnets (weight {distill['fitnets']['weight']})")
        else:
            parts.append(f"at (weight {distill['at']['weight']}, p={distill['at']['p']})")
    if not {"kd", "dkd"} & set(methods):
        parts.insert(0, "CE")
    return " + ".join(parts)


def _kb(n: float) -> str:
    """Bytes in KB (1024), MB or GB, whichever reads best."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n / 1024:.1f} KB"


def comparison_table(metrics: dict) -> str:
    models = metrics["models"]
    teacher = models["teacher"]
    scratch_acc = models["student_scratch"]["test"]["accuracy"]
    rows = ["| model | arch | test acc | precision | recall | F1 | params | size fp32 | compression | vs scratch |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for role, label in LABELS.items():
        if role not in models:
            continue
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


def absent_note(metrics: dict) -> str:
    """Classes the test split lacks are left out of the macro averages; say so rather than count them as 0."""
    absent = metrics["models"]["teacher"]["test"].get("absent_classes") or []
    if not absent:
        return ""
    return (f"The test split has no sample of class{'es' if len(absent) > 1 else ''} {', '.join(absent)}: macro "
            "precision, recall and F1 average over the classes it holds.\n\n")


def per_class_table(metrics: dict) -> str:
    models = metrics["models"]
    names = list(models["teacher"]["test"]["per_class"])
    rows = ["| class | teacher F1 | scratch F1 | KD F1 | KD recall |", "|---|---|---|---|---|"]
    for name in names:
        f1 = [models[r]["test"]["per_class"][name]["f1"] for r in ("teacher", "student_scratch", "student_kd")]
        recall = models["student_kd"]["test"]["per_class"][name]["recall"]
        rows.append(f"| {name} | {f1[0]:.3f} | {f1[1]:.3f} | {f1[2]:.3f} | {recall:.3f} |")
    return "\n".join(rows)


def _fit_cell(verdict: dict) -> str:
    if verdict["fits"]:
        c = verdict["checks"]
        return (f"fits (flash {c['flash']['margin_pct']:.0f}% free, RAM {c['ram']['margin_pct']:.0f}% free)")
    return "does not fit: " + "; ".join(verdict["overflows"])


def deployment_table(metrics: dict) -> str:
    """One row per exported file: ONNX Runtime accuracy, bytes, MACs, peak RAM, host latency, fit verdict."""
    device = metrics["device"]["name"]
    rows = [f"| model | format | ORT test acc | file | MACs | peak act. RAM | p50 / p95 latency (host) | "
            f"throughput b64 | {device} |", "|---|---|---|---|---|---|---|---|---|"]
    for role, label in LABELS.items():
        dep = metrics["models"].get(role, {}).get("deploy")
        if not dep:
            continue
        if "error" in dep:
            rows.append(f"| {label} | - | export failed: {dep['error']} | | | | | | |")
            continue
        for dtype, f in dep["formats"].items():
            lat = f["host_latency"]
            shown = f"{dtype} (16-bit input)" if f.get("input_bits") == 16 else dtype
            rows.append(f"| {label} | {shown} | {100 * f['test_accuracy_onnxruntime']:.2f}% | {_kb(f['file_bytes'])} | "
                        f"{dep['macs'] / 1e6:.2f}M | {_kb(f['peak_activation_bytes'])} | "
                        f"{lat['latency_p50_ms']:.3f} / {lat['latency_p95_ms']:.3f} ms ({lat['threads']} thr) | "
                        f"{lat['throughput_per_s']:,.0f}/s | {_fit_cell(dep['fit'][dtype])} |")
    return "\n".join(rows)


def preferred_format(dep: dict, device: dict) -> str:
    """The deploy record's preferred format; runs recorded before the key existed get the same rule applied."""
    if "preferred_dtype" in dep:
        return dep["preferred_dtype"]
    from edgedistill.deploy import DeviceProfile, preferred_dtype

    return preferred_dtype(DeviceProfile.model_validate(device), tuple(dep["formats"]))


def fit_summary(metrics: dict) -> str:
    """The sentence an engineer wants first: does the KD student fit the device, in its preferred precision?"""
    dev = metrics["device"]
    dep = metrics["models"]["student_kd"].get("deploy")
    if not dep or "error" in dep:
        return f"Device {dev['name']}: the KD student was not deployed, so its fit is unknown."
    dtype = preferred_format(dep, dev)
    v = dep["fit"][dtype]
    c = v["checks"]
    lat = c["latency_ms"]
    lat_txt = f"latency {lat['used']:.2f} ms ({lat['how']})" if lat["used"] is not None else "latency unknown"
    head = "fits" if v["fits"] else "does NOT fit"
    return (f"On {dev['name']} ({dev['description']}), the KD student as {dtype} {head}: "
            f"flash {_kb(c['flash']['used'])} of {_kb(c['flash']['budget'])}, RAM {_kb(c['ram']['used'])} of "
            f"{_kb(c['ram']['budget'])}, {lat_txt}" + ("" if v["fits"] else "; " + "; ".join(v["overflows"])) + ".")


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
        fits = "yes" if t["fits"] else "no: " + "; ".join(t["overflows"])
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
    text = f"""# edgedistill run: {metrics['name']}

Dataset: {ds['description']} — {ds['n_train']} train / {ds['n_val']} validation (carved from train) / \
{ds['n_test']} test, {ds['num_classes']} classes, input {tuple(ds['input_shape'])}.
Distillation: {method_label(d)}. Seed {metrics['config']['seed']}.
Machine: {env['platform']}, torch {env['torch']}, {env['accelerator']}{' (' + env['gpu'] + ')' if env['gpu'] else ''}.
Created {metrics['created']}. Checkpoints keep the best validation epoch; the test set chose nothing.

## Comparison (test set)

{comparison_table(metrics)}

{absent_note(metrics)}{verdict(metrics)}

## Deployment

{fit_summary(metrics) if metrics['models']['student_kd'].get('deploy') else 'Deployment was switched off (deploy.enabled: false).'}

{deployment_table(metrics) if metrics['models']['student_kd'].get('deploy') else ''}

Latency is measured on this host with ONNX Runtime at batch 1 using the device's core count; on-device latency in
the fit check is estimated from MACs and the device's indicative MAC/s ({metrics['device']['macs_source'].strip()}).
Peak activation RAM is the largest live set of tensors along the graph at batch 1 (int8: one byte per element, two for a 16-bit input).

{search_section(metrics)}## Per class (test F1)

{per_class_table(metrics)}
"""
    atomic_write_text(path, text)

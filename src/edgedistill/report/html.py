"""report.html: one self-contained page (plots embedded as PNG data) built from metrics.json alone.

A run gets its verdict, tables and charts; `compare` puts several runs on the same charts and in one table.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from edgedistill.atomic import atomic_write_text
from edgedistill.deploy.fit import fit_summary, fit_word
from edgedistill.report import plots
from edgedistill.roles import Role, label
from edgedistill.units import human_bytes as _kb
from edgedistill.report.markdown import (comparison_table, deliverables, deployment_table, method_label, pool_note,
                                         training_rows, verdict)

CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f2f4f7}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}
.verdict{font-size:17px;padding:.8em 1em;border-left:5px solid #1f4e79;background:#f5f8fc}
.bad{border-left-color:#c62828;background:#fdf3f3}.small{color:#666;font-size:13px}"""

# Once loaded, the page records whether every chart decoded; a headless browser reads it back from the DOM.
SELF_CHECK = """<script>window.addEventListener('load',function(){var imgs=[].slice.call(document.images);
document.body.setAttribute('data-images-ok',String(imgs.every(function(i){return i.complete&&i.naturalWidth>0;})));
document.body.setAttribute('data-image-count',String(imgs.length));});</script>"""


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def md_table_to_html(md: str) -> str:
    lines = [ln for ln in md.strip().splitlines() if ln.startswith("|")]
    if not lines:
        return ""
    cells = [[html.escape(c.strip()) for c in ln.strip().strip("|").split("|")] for ln in lines]
    head, body = cells[0], cells[2:]
    return ("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body) + "</table>")


def deployment_points(metrics: dict, run_label: str = "") -> list[dict]:
    """One point per model and format: accuracy through ONNX Runtime, file bytes, and the latency the fit judged."""
    points = []
    for role, m in metrics["models"].items():
        dep = m.get("deploy")
        prefix = f"{run_label}: " if run_label else ""
        if not dep or "error" in dep:
            points.append({"role": role, "dtype": "fp32", "accuracy": m["test"]["accuracy"],
                           "size": m["size_fp32_bytes"], "latency": None,
                           "label": f"{prefix}{label(role)}"})
            continue
        for key, f in dep["formats"].items():
            points.append({"role": role, "dtype": f["dtype"], "accuracy": f["test_accuracy"],
                           "size": f["file_bytes"], "latency": dep["fit"][key]["checks"]["latency_ms"]["used"],
                           "label": f"{prefix}{label(role)} {key}"})
    return points


def tradeoff_charts(points: list[dict], device: dict) -> str:
    size_png = plots.tradeoff(points, "size", "model file size (bytes, log scale)", device["flash_bytes"],
                              f"{device['name']} flash {_kb(device['flash_bytes'])}", "Accuracy against size")
    timed = [p for p in points if p["latency"]]
    how = "measured on this host" if device.get("measured_on_host") else "estimated from MACs"
    lat_png = plots.tradeoff(timed, "latency", f"latency on {device['name']} (ms, {how}, log scale)",
                             device.get("latency_budget_ms"), f"budget {device.get('latency_budget_ms')} ms",
                             "Accuracy against latency") if timed else None
    return _img(size_png, "accuracy against size") + _img(lat_png, "accuracy against latency")


def summary_verdict(metrics: dict) -> str:
    c = metrics["comparison"]
    t, k = metrics["models"][Role.TEACHER], metrics["models"][Role.STUDENT_KD]
    speed = ""
    tdep, kdep = t.get("deploy", {}), k.get("deploy", {})
    if "formats" in tdep and "formats" in kdep:
        kd_best = kdep["formats"][kdep["preferred"]]
        same = tdep["formats"].get(kdep["preferred"])
        if same and kd_best["host_latency"].get("meaningful", True):
            ratio = same["host_latency"]["latency_p50_ms"] / kd_best["host_latency"]["latency_p50_ms"]
            speed = (f" On this host the student runs {ratio:.1f}x faster than the teacher, both as "
                     f"{kdep['preferred']}.")
    fits = fit_summary(metrics) if "fit" in kdep else "Deployment was switched off, so the device fit is unknown."
    bad = " bad" if "fit" in kdep and kdep["fit"][kdep["preferred"]]["fits"] is False else ""
    return (f'<p class="verdict{bad}">{html.escape(fits)}<br>The KD student costs '
            f"{100 * c['kd_accuracy_drop_vs_teacher']:.2f} accuracy points against the teacher and buys "
            f"{c['compression_ratio_params']:.1f}x fewer parameters.{speed}<br>{html.escape(verdict(metrics))}</p>")


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}{SELF_CHECK}</body></html>")


def run_html(metrics: dict) -> str:
    ds, models = metrics["dataset"], metrics["models"]
    body = [f"<h1>edgedistill run: {html.escape(metrics['name'])}</h1>",
            f"<p class=small>{html.escape(ds['description'])}; {ds['n_train']} train"
            f"{' labelled + ' + format(ds['n_unlabeled'], ',') + ' unlabelled' if ds.get('n_unlabeled') else ''} / "
            f"{ds['n_val']} validation / "
            f"{ds['n_test']} test. Created {metrics['created']}. Device: {html.escape(metrics['device']['name'])} "
            f"({html.escape(metrics['device']['description'])}).</p>",
            f"<p class=small>Distillation: {html.escape(method_label(metrics['config']['distill']))}.</p>",
            f"<p class=small>{html.escape(pool_note(metrics))} "
            f"{html.escape(training_rows(metrics))}</p>",
            summary_verdict(metrics), "<h2>Comparison (test set)</h2>", md_table_to_html(comparison_table(metrics))]
    if "deploy" in models[Role.STUDENT_KD]:
        files = deliverables(metrics).replace("`", "").splitlines()
        body += ["<h2>Deployment</h2>", md_table_to_html(deployment_table(metrics)),
                 "<ul>" + "".join(f"<li>{html.escape(f.lstrip('- '))}</li>" for f in files) + "</ul>",
                 f"<p class=small>Throughput source for on-device estimates: "
                 f"{html.escape(metrics['device']['macs_source'])}</p>"]
    body += ["<h2>Trade-offs</h2>", tradeoff_charts(deployment_points(metrics), metrics["device"]),
             "<h2>Training</h2>", _img(plots.training_curves(models), "training curves"),
             "<h2>Where the student errs</h2>", _img(plots.confusion_matrices(models, ds["class_names"]),
                                                      "confusion matrices"),
             _img(plots.per_class_f1(models, ds["class_names"]), "per-class F1")]
    return page(f"edgedistill: {metrics['name']}", "\n".join(body))


def write_report_html(path: Path, metrics: dict) -> None:
    atomic_write_text(path, run_html(metrics))


def compare_rows(runs: list[tuple[str, dict]]) -> str:
    rows = ["| run | dataset | teacher | student | method | device | teacher acc | scratch acc | KD acc | KD gain | "
            "student file | fits |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, m in runs:
        md = m["models"]
        d = m["config"]["distill"]
        kdep = md[Role.STUDENT_KD].get("deploy", {})
        best = kdep["preferred"] if "formats" in kdep else None
        fmt, fit = (kdep["formats"][best], kdep["fit"][best]) if best else (None, None)
        rows.append(f"| {label} | {m['dataset']['name']} | {md[Role.TEACHER]['model']} | {md[Role.STUDENT_KD]['model']} | "
                    f"{method_label(d)} | {m['device']['name']} | "
                    f"{100 * md[Role.TEACHER]['test']['accuracy']:.2f}% | "
                    f"{100 * md[Role.STUDENT_SCRATCH]['test']['accuracy']:.2f}% | "
                    f"{100 * md[Role.STUDENT_KD]['test']['accuracy']:.2f}% | "
                    f"{100 * m['comparison']['kd_gain_over_scratch']:+.2f} pts | "
                    f"{_kb(fmt['file_bytes']) + ' ' + best if fmt else '-'} | {fit_word(fit['fits']) if fit else '-'} |")
    return "\n".join(rows)


def compare_html(runs: list[tuple[str, dict]]) -> str:
    points = [p for label, m in runs for p in deployment_points(m, label)]
    device = runs[0][1]["device"]
    body = [f"<h1>edgedistill comparison of {len(runs)} runs</h1>", md_table_to_html(compare_rows(runs)),
            f"<p class=small>Budget lines are those of {html.escape(device['name'])}, the first run's device.</p>",
            "<h2>Trade-offs</h2>", tradeoff_charts(points, device)]
    for label, m in runs:
        body += [f"<h2>{html.escape(label)}</h2>", _img(plots.training_curves(m["models"]), f"{label} curves"),
                 _img(plots.per_class_f1(m["models"], m["dataset"]["class_names"]), f"{label} per-class F1")]
    return page("edgedistill comparison", "\n".join(body))

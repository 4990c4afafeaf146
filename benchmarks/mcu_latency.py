"""Calibrate the Cortex-M latency estimate on MLPerf Tiny's published closed-division results.

    python benchmarks/mcu_latency.py

Builds MLPerf Tiny's four reference models (ResNet-8, DS-CNN, MobileNetV1 0.25, FC autoencoder) in PyTorch from
their Keras definitions in mlcommons/tiny, counts their MACs with edgedistill's own counter (the one the fit check
uses on a student), fits cycles per MAC per Cortex-M core to the measurements in
src/edgedistill/deploy/mcu_measurements.yaml, and writes src/edgedistill/deploy/mcu_latency_fit.yaml and the
"mcu_latency" section of docs/deployment.md. Nothing is measured here: every latency is a published one.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch.nn as nn
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from record import header, replace_section  # noqa: E402

from edgedistill.deploy.mcu_latency import (FIT, MEASUREMENTS, fit_cores, points, read_package_yaml,  # noqa: E402
                                            with_derived_tflm)
from edgedistill.deploy.profile import count_macs  # noqa: E402

DOC = ROOT / "docs" / "deployment.md"
OUT = ROOT / "src" / "edgedistill" / "deploy" / FIT


def conv(cin: int, cout: int, k, stride=1, padding=None, groups: int = 1) -> nn.Module:
    """Conv + batch norm + ReLU, 'same' padding for odd kernels (the MAC count follows the output size only)."""
    if padding is None:
        padding = k // 2 if isinstance(k, int) else tuple(x // 2 for x in k)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, groups=groups), nn.BatchNorm2d(cout), nn.ReLU())


class ResidualStack(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(conv(cin, cout, 3, stride), nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if stride == 1 else nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x):
        return (self.skip(x) + self.body(x)).relu()


def resnet8() -> nn.Module:
    """mlcommons/tiny v0.1/benchmarks/image_classification/keras_model.py: resnet_v1_eembc (16/32/64 filters)."""
    return nn.Sequential(conv(3, 16, 3), ResidualStack(16, 16, 1), ResidualStack(16, 32, 2), ResidualStack(32, 64, 2),
                         nn.AvgPool2d(8), nn.Flatten(), nn.Linear(64, 10))


def ds_cnn() -> nn.Module:
    """mlcommons/tiny v0.1/training/keyword_spotting/keras_model.py: ds_cnn, 64 filters, 49x10 MFCC input."""
    layers = [conv(1, 64, (10, 4), 2, (5, 1))]
    for _ in range(4):
        layers += [conv(64, 64, 3, groups=64), conv(64, 64, 1)]
    return nn.Sequential(*layers, nn.AvgPool2d((25, 5)), nn.Flatten(), nn.Linear(64, 12))


def mobilenet_v1_025() -> nn.Module:
    """mlcommons/tiny v0.1/benchmarks/visual_wake_words/vww_model.py: MobileNetV1 with 8 first filters, 96x96x3."""
    layers, c = [conv(3, 8, 3, 2)], 8
    for stride, double in [(1, True), (2, True), (1, False), (2, True), (1, False), (2, True)] + [(1, False)] * 5 \
            + [(2, True), (1, False)]:
        out = 2 * c if double else c
        layers += [conv(c, c, 3, stride, groups=c), conv(c, out, 1)]
        c = out
    return nn.Sequential(*layers, nn.AvgPool2d(3), nn.Flatten(), nn.Linear(c, 2))


def fc_autoencoder() -> nn.Module:
    """mlcommons/tiny v0.1/benchmarks/anomaly_detection/keras_model.py: 640-128x4-8-128x4-640."""
    widths = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128]
    layers = [m for a, b in zip(widths, widths[1:]) for m in (nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU())]
    return nn.Sequential(*layers, nn.Linear(128, 640))


REFERENCE = {"ic": (resnet8, (3, 32, 32)), "kws": (ds_cnn, (1, 49, 10)), "vww": (mobilenet_v1_025, (3, 96, 96)),
             "ad": (fc_autoencoder, (640,))}


def table(data: dict, macs: dict[str, int], fit: dict) -> str:
    rows = ["| board, runtime | core, clock | model | MACs | published | fitted | published / fitted |",
            "|---|---|---|---|---|---|---|"]
    for r in with_derived_tflm(points(data, macs)):
        s, f = data["systems"][r["system"]], fit[r["core"]]
        measured = 1000 * r["cycles_per_mac"] * macs[r["model"]] / s["clock_hz"]
        fitted = 1000 * f["cycles_per_mac"] * macs[r["model"]] / s["clock_hz"]
        runtime = ("TFLite Micro equivalent, derived: this board's figure x TFLite Micro's over Plumerai's time for "
                   "the same model on NUCLEO-L4R5ZI" if r["derived"] else f"{s['runtime']} ({s['suite']})")
        rows.append(f"| {s['board']}, {runtime} | {s['core']}, {s['clock_hz'] / 1e6:.0f} MHz | "
                    f"{r['model']} | {macs[r['model']]:,} | {measured:.2f} ms | {fitted:.2f} ms | "
                    f"{measured / fitted:.2f} |")
    cores = ["| core | cycles per MAC | error: measured / fitted | points (measured + derived) |", "|---|---|---|---|"]
    cores += [f"| {c} | {f['cycles_per_mac']:.2f} | x{f['ratio_min']:.2f} to x{f['ratio_max']:.2f} | "
              f"{f['measured_points']} + {f['derived_points']} |" for c, f in fit.items()]
    return "\n".join(cores) + "\n\n" + "\n".join(rows)


def main() -> None:
    t0 = time.perf_counter()
    data = read_package_yaml(MEASUREMENTS)
    macs = {name: count_macs(build(), shape) for name, (build, shape) in REFERENCE.items()}
    fit = fit_cores(data, macs)
    head = header(time.perf_counter() - t0)
    OUT.write_text("# Written by benchmarks/mcu_latency.py from mcu_measurements.yaml; do not edit by hand.\n"
                   + "".join(f"# {line}\n" for line in head.strip().splitlines())
                   + yaml.safe_dump({"macs": macs, "cores": fit}, sort_keys=False))
    body = table(data, macs, fit)
    replace_section("mcu_latency", f"{head}\n{body}\n", doc=DOC)
    print(body)


if __name__ == "__main__":
    main()

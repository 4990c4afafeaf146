"""Cortex-M latency from MACs, calibrated on published measurements: MLPerf Tiny's closed-division results for its
reference models (mcu_measurements.yaml, each row with its source) give cycles per MAC per core; the spread of
measured over fitted latency across those points is the estimate's error, so it is printed as a range.

Where a core was measured only with an optimizing engine (Plumerai's on the Cortex-M7) and not with TFLite Micro,
which runs the file edgedistill hands over, TFLM-equivalent points are derived from the board measured with both:
the same model's TFLM-over-engine time ratio there. They are marked derived in the fit.
"""
from __future__ import annotations

import functools
import math
from importlib import resources

import yaml

MEASUREMENTS = "mcu_measurements.yaml"
FIT = "mcu_latency_fit.yaml"


def read_package_yaml(name: str) -> dict:
    return yaml.safe_load(resources.files("edgedistill.deploy").joinpath(name).read_text())


def points(data: dict, macs: dict[str, int]) -> list[dict]:
    """Every measurement as cycles per MAC on its core: clock / (inferences per second x MACs)."""
    rows = []
    for m in data["measurements"]:
        system = data["systems"][m["system"]]
        rows.append({"core": system["core"], "system": m["system"], "model": m["model"], "tflm": system["tflm"],
                     "cycles_per_mac": system["clock_hz"] / (m["per_s"] * macs[m["model"]]), "derived": False})
    return rows


def tflm_ratios(rows: list[dict]) -> dict[str, float]:
    """Per model, TFLM's time over an optimizing engine's on a core measured with both (largest ratio if several)."""
    ratios: dict[str, float] = {}
    for t in (r for r in rows if r["tflm"]):
        for o in (r for r in rows if not r["tflm"] and r["core"] == t["core"] and r["model"] == t["model"]):
            ratios[t["model"]] = max(ratios.get(t["model"], 0.0), t["cycles_per_mac"] / o["cycles_per_mac"])
    return ratios


def with_derived_tflm(rows: list[dict]) -> list[dict]:
    """Add TFLM-equivalent points for cores measured only with an optimizing engine."""
    ratios = tflm_ratios(rows)
    tflm_cores = {r["core"] for r in rows if r["tflm"]}
    derived = [r | {"cycles_per_mac": r["cycles_per_mac"] * ratios[r["model"]], "tflm": True, "derived": True}
               for r in rows if r["core"] not in tflm_cores and r["model"] in ratios]
    return rows + derived


def fit_cores(data: dict, macs: dict[str, int]) -> dict[str, dict]:
    """Per core: the geometric mean of its points' cycles per MAC, and the smallest and largest ratio of a point's
    (measured or derived) latency to the fitted one."""
    rows = with_derived_tflm(points(data, macs))
    fit = {}
    for core in sorted({r["core"] for r in rows}):
        mine = [r for r in rows if r["core"] == core]
        centre = math.exp(sum(math.log(r["cycles_per_mac"]) for r in mine) / len(mine))
        ratios = [r["cycles_per_mac"] / centre for r in mine]
        fit[core] = {"cycles_per_mac": round(centre, 4), "ratio_min": round(min(ratios), 4),
                     "ratio_max": round(max(ratios), 4), "measured_points": sum(not r["derived"] for r in mine),
                     "derived_points": sum(r["derived"] for r in mine),
                     "systems": sorted({data["systems"][r["system"]]["board"] + ", "
                                        + data["systems"][r["system"]]["runtime"] for r in mine})}
    return fit


@functools.lru_cache(maxsize=1)
def stored_fit() -> dict:
    """The fit benchmarks/mcu_latency.py wrote: per core, cycles per MAC and its error; and the models' MACs."""
    return read_package_yaml(FIT)


def core_fit(core: str) -> dict | None:
    """The fit of a core named in any case (a datasheet's Cortex-M7 is the fit's cortex-m7); None when it has none."""
    return stored_fit()["cores"].get(core.strip().lower())


def fitted_cores() -> list[str]:
    """The cores with a latency fit, as a profile's `core` names them."""
    return sorted(stored_fit()["cores"])


def latency_range_ms(macs: int, core: str, clock_hz: float) -> tuple[float, float, float, dict] | None:
    """(low, fitted, high) milliseconds for this many MACs on this core at this clock, and the core's fit; None for
    a core with no measurements."""
    fit = core_fit(core)
    if fit is None:
        return None
    ms = 1000.0 * macs * fit["cycles_per_mac"] / clock_hz
    return ms * fit["ratio_min"], ms, ms * fit["ratio_max"], fit

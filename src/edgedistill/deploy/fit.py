"""Does a model fit the device? Flash, RAM and latency, each with its margin, how it was obtained (measured by a
runtime, or estimated), and a one-line reason when not."""
from __future__ import annotations

from dataclasses import dataclass

from edgedistill.deploy.devices import DeviceProfile
from edgedistill.roles import Role
from edgedistill.units import human_bytes


@dataclass(frozen=True)
class Footprint:
    """What one exported file needs, with where each figure came from."""

    file_bytes: int
    estimated_ram_bytes: int  # graph-walk estimate of peak activations
    weight_bytes: int
    macs: int
    measured_ram_bytes: int | None = None  # what a runtime allocated (TFLite Micro's arena, Vela's SRAM)
    ram_how: str = ""
    ram_margin_bytes: int = 0  # the C header's scratch margin over the measured arena (its ARENA_BYTES is the sum)
    measured_ram_holds_weights: bool = False  # Vela in Sram_Only mode places the weights in its SRAM figure
    flash_bytes: int | None = None  # what a compiler says the model takes in flash (Vela), else the file
    flash_how: str = ""
    latency_ms: float | None = None  # host-measured or compiler-estimated latency
    latency_how: str = ""


def _check(used: float, budget: float | None) -> dict:
    if budget is None:
        return {"used": used, "budget": None, "margin": None, "margin_pct": None, "fits": True}
    margin = budget - used
    return {"used": used, "budget": budget, "margin": margin, "margin_pct": 100.0 * margin / budget,
            "fits": margin >= 0}


def estimated_latency_ms(macs: int, device: DeviceProfile, dtype: str) -> float | None:
    rate = device.macs_per_second.get(dtype)
    return None if not rate else 1000.0 * macs / rate


def _ram(device: DeviceProfile, fp: Footprint) -> dict:
    """A runtime's measured figure where there is one, plus what it leaves out; else the graph-walk estimate."""
    weights = fp.weight_bytes if device.weights_in_ram else 0
    estimate = fp.estimated_ram_bytes + weights
    if fp.measured_ram_bytes is None:
        how = "estimated: peak live activations along the graph" + (" + weights" if weights else "")
        return _check(estimate, device.ram_bytes) | {"how": how, "estimate": estimate}
    added = {what: n for what, n in beside_measured_ram(device, fp, weights).items() if n}
    how = f"measured: {fp.ram_how}" + "".join(f" + {human_bytes(n)} {what}" for what, n in added.items())
    return _check(fp.measured_ram_bytes + sum(added.values()), device.ram_bytes) | {"how": how, "estimate": estimate}


def beside_measured_ram(device: DeviceProfile, fp: Footprint, weights: int) -> dict[str, int]:
    """What the firmware needs beyond a runtime's measured RAM: the margin its C header adds to the arena, the
    weights where the device copies them into RAM (an arena holds none), and the runtime itself."""
    return {"scratch margin (the C header's ARENA_BYTES = arena + margin)": fp.ram_margin_bytes,
            "weights (this device keeps them in RAM)": 0 if fp.measured_ram_holds_weights else weights,
            "runtime (estimated)": device.runtime_ram_bytes}


def _flash(device: DeviceProfile, fp: Footprint) -> dict:
    model = fp.flash_bytes if fp.flash_bytes is not None else fp.file_bytes
    how = f"measured: {fp.flash_how}" if fp.flash_bytes is not None else "measured: file bytes"
    if device.runtime_flash_bytes:
        how += f" + {human_bytes(device.runtime_flash_bytes)} runtime and kernels (estimated)"
    return _check(model + device.runtime_flash_bytes, device.flash_bytes) | {"how": how,
                                                                           "runtime_source": device.runtime_source}


def _calibrated_latency(device: DeviceProfile, fp: Footprint) -> dict | None:
    """A Cortex-M latency from the fit to published measurements, judged at the slow end of its range."""
    from edgedistill.deploy.mcu_latency import latency_range_ms

    found = latency_range_ms(fp.macs, device.core, device.clock_hz) if device.core and device.clock_hz else None
    if found is None:
        return None
    low, mid, high, f = found
    how = (f"estimated: {fp.macs:,} MACs x {f['cycles_per_mac']:.2f} cycles/MAC on a {device.core} at "
           f"{device.clock_hz / 1e6:.0f} MHz, fitted to {f['measured_points']} MLPerf Tiny results"
           + (f" and {f['derived_points']} derived" if f["derived_points"] else "")
           + f" (published / fitted x{f['ratio_min']:.2f} to x{f['ratio_max']:.2f}; docs/deployment.md)")
    return _check(high, device.latency_budget_ms) | {"how": how, "range_ms": [low, high], "estimate_ms": mid}


def _latency(device: DeviceProfile, fp: Footprint, dtype: str) -> dict:
    """The latency against the budget; when no figure exists, a budget is unknown to be met (fits: None)."""
    if fp.latency_ms is None and (calibrated := _calibrated_latency(device, fp)) is not None:
        return calibrated
    if fp.latency_ms is not None:
        latency, how = fp.latency_ms, fp.latency_how
    else:
        latency = estimated_latency_ms(fp.macs, device, dtype)
        how = (f"estimated: MACs / {device.macs_per_second.get(dtype, 0):.3g} MAC/s ({dtype})" if latency
               else "unknown: " + latency_unknown_why(device, dtype))
    if latency is None:
        return {"used": None, "budget": device.latency_budget_ms, "margin": None, "margin_pct": None,
                "fits": None if device.latency_budget_ms is not None else True, "how": how}
    return _check(latency, device.latency_budget_ms) | {"how": how}


def core_gap(device: DeviceProfile) -> str | None:
    """A profile's core with no calibrated latency fit, named beside the cores that have one."""
    from edgedistill.deploy.mcu_latency import core_fit, fitted_cores

    if not device.core or core_fit(device.core) is not None:
        return None
    return f"core {device.core!r} has no calibrated latency fit (cores with one: {', '.join(fitted_cores())})"


def latency_unknown_why(device: DeviceProfile, dtype: str) -> str:
    """Why this profile gives no latency for this dtype, in words that say what to add."""
    reasons = [core_gap(device) or (f"core {device.core!r} has no clock_hz" if device.core else None)]
    rates = ", ".join(device.macs_per_second)
    reasons.append(f"macs_per_second has no {dtype} rate" + (f" (only {rates})" if rates else ""))
    return "; ".join(r for r in reasons if r)


def latency_warning(device: DeviceProfile, verdict: dict) -> str | None:
    """Before training: a latency budget that no figure can check, or a core the latency fit does not know."""
    lat, dtype = verdict["checks"]["latency_ms"], verdict["dtype"]
    if lat["fits"] is None and not measured_later(device, verdict.get("format")):
        return (f"device {device.name!r}: latency_budget_ms {lat['budget']:g} cannot be checked for {dtype}: "
                f"{lat['how'].removeprefix('unknown: ')}; give macs_per_second: {{{dtype}: ...}} or a core with a "
                "latency fit in the device file")
    gap = core_gap(device)
    return None if gap is None else f"device {device.name!r}: {gap}; its latency is {lat['how']}"


def measured_later(device: DeviceProfile, fmt: str | None) -> bool:
    """Whether the trained student's latency will be measured here (a host profile, a runtime whose speed here is
    its speed there), so a budget unchecked before training is checked after it."""
    from edgedistill.deploy.backends import parse_format

    return bool(device.measured_on_host and fmt and parse_format(fmt)[0].speed_is_meaningful)


def fit_check(device: DeviceProfile, dtype: str, fp: Footprint) -> dict:
    """One verdict for one exported file on one device: fits is None when every checked budget is met but one
    could not be checked (a latency budget with no latency figure)."""
    checks = {
        "dtype": _check(0, None) | {"fits": dtype in device.dtypes, "used": dtype, "budget": device.dtypes},
        "flash": _flash(device, fp),
        "ram": _ram(device, fp),
        "latency_ms": _latency(device, fp, dtype),
    }
    overflow = [describe_overflow(name, c) for name, c in checks.items() if c["fits"] is False]
    unchecked = any(c["fits"] is None for c in checks.values())
    measured = [n for n in ("flash", "ram") if checks[n]["how"].startswith("measured")]
    if not checks["latency_ms"]["how"].startswith(("estimated", "unknown")):
        measured.append("latency")
    return {"device": device.name, "dtype": dtype, "fits": False if overflow else (None if unchecked else True),
            "checks": checks, "overflows": overflow, "ram_counts_weights": device.weights_in_ram, "measured": measured}


def describe_overflow(name: str, check: dict) -> str:
    if name == "dtype":
        return f"{check['used']} is not among the device's dtypes {check['budget']}"
    if name == "latency_ms" and check.get("range_ms"):
        low, high = check["range_ms"]
        return (f"latency, estimated {low:.1f}-{high:.1f} ms, can exceed the {check['budget']:.1f} ms budget by "
                f"{-check['margin']:.1f} ms")
    if name == "latency_ms":
        return f"latency {check['used']:.1f} ms exceeds the {check['budget']:.1f} ms budget by {-check['margin']:.1f} ms"
    return (f"{name} needs {human_bytes(check['used'])} of {human_bytes(check['budget'])} "
            f"(over by {human_bytes(-check['margin'])})")


def unchecked_latency(check: dict) -> str:
    """A latency budget with no figure to judge it by, and why."""
    return f"the {check['budget']:g} ms latency budget could not be checked ({check['how'].removeprefix('unknown: ')})"


def fit_sentence(verdict: dict) -> str:
    """The verdict in words: what is left free when it fits, what overflows when it does not, and a budget that
    could not be checked, never counted as met."""
    c = verdict["checks"]
    lat = c["latency_ms"]
    if verdict["fits"]:
        return f"fits (flash {c['flash']['margin_pct']:.0f}% free, RAM {c['ram']['margin_pct']:.0f}% free)"
    if verdict["fits"] is None:
        return (f"fits flash ({c['flash']['margin_pct']:.0f}% free) and RAM ({c['ram']['margin_pct']:.0f}% free), "
                f"but {unchecked_latency(lat)}")
    unchecked = [unchecked_latency(lat)] if lat["fits"] is None else []
    return "does not fit: " + "; ".join(verdict["overflows"] + unchecked)


def latency_text(lat: dict) -> str:
    """The latency as the summary gives it: a range, a figure, or unknown (and then whether a budget was left
    unchecked)."""
    if lat.get("range_ms"):
        return f"latency {lat['range_ms'][0]:.2f}-{lat['range_ms'][1]:.2f} ms ({lat['how']})"
    if lat["used"] is not None:
        return f"latency {lat['used']:.2f} ms ({lat['how']})"
    return "latency unknown, so " + unchecked_latency(lat) if lat["budget"] is not None else "latency unknown"


def fit_summary(metrics: dict) -> str:
    """The sentence an engineer wants first: does the KD student fit the device, in its preferred format?"""
    dev = metrics["device"]
    dep = metrics["models"][Role.STUDENT_KD].get("deploy")
    if not dep or "error" in dep:
        return f"Device {dev['name']}: the KD student was not deployed, so its fit is unknown."
    key = dep["preferred"]
    v = dep["fit"][key]
    c = v["checks"]
    ram_how = c["ram"].get("how", "estimated")
    ram_txt = f"RAM {human_bytes(c['ram']['used'])} of {human_bytes(c['ram']['budget'])} ({ram_how}"
    if ram_how.startswith("measured") and "estimate" in c["ram"]:
        ram_txt += f"; the graph-walk estimate was {human_bytes(c['ram']['estimate'])}"
    head = {True: "fits", False: "does NOT fit", None: "fits flash and RAM, but whether it meets the latency "
                                                      "budget is unknown"}[v["fits"]]
    return (f"On {dev['name']} ({dev['description'].strip()}), the KD student as {key} {head}: "
            f"flash {human_bytes(c['flash']['used'])} of {human_bytes(c['flash']['budget'])} ({c['flash'].get('how', 'file bytes')}), "
            f"{ram_txt}), {latency_text(c['latency_ms'])}"
            + ("; " + "; ".join(v["overflows"]) if v["overflows"] else "") + ".")


def fit_word(fits: bool | None) -> str:
    """A verdict's `fits` in one word for tables: yes, no, or unknown (a budget that was not checked)."""
    return {True: "yes", False: "no", None: "unknown"}[fits]


def fit_tag(fits: bool | None) -> str:
    """A verdict's `fits` as a tracker's `fit` tag, read beside other runs' tags without the table's header."""
    return {True: "fits", False: "does not fit", None: "fit unknown"}[fits]

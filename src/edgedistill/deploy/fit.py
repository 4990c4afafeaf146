"""Does a model fit the device? Flash, RAM and latency, each with its margin, and a one-line reason when not."""
from __future__ import annotations

from edgedistill.deploy.devices import DeviceProfile


def _check(used: float, budget: float | None) -> dict:
    if budget is None:
        return {"used": used, "budget": None, "margin": None, "margin_pct": None, "fits": True}
    margin = budget - used
    return {"used": used, "budget": budget, "margin": margin, "margin_pct": 100.0 * margin / budget,
            "fits": margin >= 0}


def estimated_latency_ms(macs: int, device: DeviceProfile, dtype: str) -> float | None:
    rate = device.macs_per_second.get(dtype)
    return None if not rate else 1000.0 * macs / rate


def fit_check(device: DeviceProfile, dtype: str, file_bytes: int, peak_activation_bytes: int, weight_bytes: int,
              macs: int, measured_latency_ms: float | None = None) -> dict:
    """One verdict for one exported file on one device."""
    ram_used = peak_activation_bytes + (weight_bytes if device.weights_in_ram else 0)
    if device.measured_on_host and measured_latency_ms is not None:
        latency, how = measured_latency_ms, "measured on this host (ONNX Runtime p50, batch 1)"
    else:
        latency = estimated_latency_ms(macs, device, dtype)
        how = f"estimated: MACs / {device.macs_per_second.get(dtype, 0):.3g} MAC/s ({dtype})" if latency else "unknown"
    checks = {
        "dtype": _check(0, None) | {"fits": dtype in device.dtypes, "used": dtype, "budget": device.dtypes},
        "flash": _check(file_bytes, device.flash_bytes),
        "ram": _check(ram_used, device.ram_bytes),
        "latency_ms": _check(latency, device.latency_budget_ms) if latency is not None else
        {"used": None, "budget": device.latency_budget_ms, "margin": None, "margin_pct": None, "fits": True},
    }
    checks["latency_ms"]["how"] = how
    overflow = [describe_overflow(name, c) for name, c in checks.items() if not c["fits"]]
    return {"device": device.name, "dtype": dtype, "fits": not overflow, "checks": checks,
            "overflows": overflow, "ram_counts_weights": device.weights_in_ram}


def describe_overflow(name: str, check: dict) -> str:
    if name == "dtype":
        return f"{check['used']} is not among the device's dtypes {check['budget']}"
    if name == "latency_ms":
        return f"latency {check['used']:.1f} ms exceeds the {check['budget']:.1f} ms budget by {-check['margin']:.1f} ms"
    return (f"{name} needs {check['used'] / 1024:.1f} KB of {check['budget'] / 1024:.1f} KB "
            f"(over by {-check['margin'] / 1024:.1f} KB)")

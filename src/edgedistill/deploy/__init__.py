"""Edge deployment: the files a device's runtime loads (ONNX, ExecuTorch .pte, LiteRT .tflite, TFLite Micro C
source), each scored and timed here through that runtime, and the fit check against the device.

Every figure is measured on the real artefact: file bytes on disk, accuracy and latency through the runtime, the
tensor arena TFLite Micro allocates, Vela's report for an NPU. The graph-walk RAM estimate is kept beside them.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgedistill.data import DataSplits
from edgedistill.deploy.backends import Backend, backends, check_formats, missing_runtime, parse_format, run_file
from edgedistill.deploy.devices import DeviceProfile, get_device, load_catalog
from edgedistill.deploy.estimate import estimate_ram, ram_hooks
from edgedistill.deploy.fit import Footprint, fit_check
from edgedistill.deploy.onnx_export import logit_agreement
from edgedistill.deploy.plan import DeployPlan, deploy_plan, device_formats, preferred_format
from edgedistill.deploy.profile import count_macs, host_threads, measure_latency
from edgedistill.deploy.quantize import check_input_bits
from edgedistill.deploy.reach import Unrunnable, explain
from edgedistill.errors import UserError
from edgedistill.models import count_params
from edgedistill.models.evaluate import model_input

__all__ = ["DeployPlan", "DeviceProfile", "ELEMENT_BYTES", "NoFormat", "Unrunnable", "get_device", "load_catalog",
           "check_deploy", "check_input_bits", "deploy_model", "deploy_plan", "early_fit_check", "device_formats",
           "estimate_ram", "preferred_format", "reach_check"]

# Bytes a weight takes in each deployable precision; int8 activations are one byte in an integer-only runtime.
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


def check_deploy(formats: list[str] | tuple[str, ...], device: DeviceProfile, input_bits: int,
                 field_name: str = "deploy.formats") -> None:
    """Before any training: every format is known and installed, and an NPU device has its compiler and an
    accelerator the compiler knows."""
    check_formats(list(formats), input_bits, field_name)
    if device.npu is not None:
        check_npu(formats, device, field_name)


def check_npu(formats: list[str] | tuple[str, ...], device: DeviceProfile, field_name: str) -> None:
    """A format some backend compiles for the NPU, that compiler installed, and an accelerator it knows."""
    parsed = [parse_format(f, field_name) for f in formats]
    compilers = [b.npu for b, dtype in parsed if b.npu is not None and dtype == b.npu.dtype]
    if not compilers:
        sources = {f"{b.name}-{b.npu.dtype}": b.npu for b in backends().values() if b.npu is not None}
        fix, compiler = " or ".join(sources), next(iter(sources.values()))
        raise UserError(f"{field_name}: device {device.name!r} has {compiler.npu}, which {compiler.name} compiles "
                        f"from the {fix} file; add {fix}")
    if (pip := missing_runtime(compilers[0])) is not None:
        raise UserError(f"device: {device.name!r} needs {compilers[0].title}, which is not installed; run `{pip}`")
    compilers[0].check(device.name, device.npu)


def ram_graphs(chosen: list[Backend], model: nn.Module, input_shape: tuple[int, ...],
               calibration_x: np.ndarray) -> dict:
    """Each distinct `ram_graph` hook's result, made once per model and shared by the backends naming it."""
    graphs: dict = {}
    for backend in chosen:
        make_graph, _ = ram_hooks(backend)
        if make_graph not in graphs:
            graphs[make_graph] = make_graph(model, input_shape, calibration_x)
    return graphs


def export_file(backend: Backend, model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray,
                path: Path, dtype: str, input_bits: int, made: dict[Path, dict]) -> tuple[Path, dict]:
    """Write one format's file (once, when two runtimes load the same file: litert and tflm), plus notes."""
    if path not in made:
        made[path] = backend.make_file(model, input_shape, calibration_x, path, dtype, input_bits)
    return path, made[path]


def measure_file(backend: Backend, path: Path, dtype: str, graphs: dict, device: DeviceProfile,
                 out_dir: Path) -> dict:
    """What the file itself says: its bytes, the RAM estimate, what its runtime measures (TFLM's arena, its C
    pair) and, for an NPU, its compiler's file and report."""
    make_graph, read_peak = ram_hooks(backend)
    record = {"file_bytes": backend.file_bytes(path), "peak_activation_bytes": read_peak(graphs[make_graph], path, dtype)}
    if backend.extras is not None:
        record |= backend.extras(path, dtype)
    if device.npu is not None and backend.npu is not None and dtype == backend.npu.dtype:
        record |= backend.npu.compile(path, device.npu, out_dir)
    return record


def score_format(backend: Backend, path: Path, data: DataSplits, torch_test_logits: np.ndarray, threads: int,
                 latency_runs: int) -> dict:
    """Test and validation accuracy through the runtime, agreement with PyTorch, host latency."""
    session = backend.open(path, threads)
    workers = os.cpu_count() or 1
    test_logits = run_file(backend, path, session, data.x_test, workers)
    val_logits = run_file(backend, path, session, data.x_val, workers)
    record = {"test_accuracy": float(np.mean(test_logits.argmax(1) == data.y_test)),
              "val_accuracy": float(np.mean(val_logits.argmax(1) == data.y_val))}
    record |= logit_agreement(test_logits, torch_test_logits)
    runs = latency_runs if backend.speed_is_meaningful else max(5, latency_runs // 10)
    record["host_latency"] = measure_latency(session, data.input_shape, threads, runs=runs,
                                             throughput_batch=64 if backend.speed_is_meaningful else 8,
                                             throughput_seconds=min(1.0, latency_runs / 100))
    record["host_latency"]["meaningful"] = backend.speed_is_meaningful
    return record


def footprint(backend: Backend, dtype: str, record: dict, model: nn.Module, macs: int, device: DeviceProfile
              ) -> Footprint:
    """The figures the fit check judges: what the runtime or Vela measured, the arena margin the C header adds, the
    estimate beside them."""
    lat = record.get("host_latency", {})
    measured_here = device.measured_on_host and backend.speed_is_meaningful and lat
    vela = record.get("npu")
    return Footprint(
        file_bytes=record["file_bytes"], estimated_ram_bytes=record["peak_activation_bytes"],
        weight_bytes=count_params(model) * ELEMENT_BYTES[dtype], macs=macs,
        measured_ram_bytes=vela["sram_bytes"] if vela else record.get("measured_ram_bytes"),
        ram_how=vela["how"] if vela else record.get("ram_how", ""),
        ram_margin_bytes=record.get("arena_margin_bytes") or 0,
        measured_ram_holds_weights=bool(vela) and vela["memory_mode"] == "Sram_Only",
        flash_bytes=vela["flash_bytes"] if vela else None, flash_how=vela["how"] if vela else "",
        latency_ms=vela["inference_ms"] if vela else (lat["latency_p50_ms"] if measured_here else None),
        latency_how=vela["how"] if vela else f"measured on this host ({backend.name} p50, batch 1)")


def deploy_model(model: nn.Module, role: str, input_shape: tuple[int, ...], export_dir: Path, data: DataSplits,
                 torch_test_logits: np.ndarray, calibration_x: np.ndarray, device: DeviceProfile,
                 formats: list[str], latency_runs: int = 100, input_bits: int = 8) -> dict:
    """Write every format's file, score it through its runtime, measure what the runtime can, and fit-check it.

    A format that fails (an operator its converter lacks) is recorded with its one-line reason; the others go on.
    Validation accuracy through each runtime is recorded too: decisions (whether to run QAT) use it, never test.
    """
    model = model.cpu().eval()
    export_dir.mkdir(parents=True, exist_ok=True)
    macs = count_macs(model, input_shape)
    parsed = {fmt: parse_format(fmt) for fmt in formats}
    graphs = ram_graphs([b for b, _ in parsed.values()], model, input_shape, calibration_x)
    out: dict = {"macs": macs, "formats": {}, "fit": {}, "failed": {},
                 "val_accuracy_torch": torch_accuracy(model, data.x_val, data.y_val)}
    threads = host_threads(device.cores)
    made: dict[Path, dict] = {}
    for fmt, (backend, dtype) in parsed.items():
        path = export_dir / f"{role}_{dtype}{backend.suffix}"
        try:
            path, notes = export_file(backend, model, input_shape, calibration_x, path, dtype, input_bits, made)
            record = {"runtime": backend.name, "dtype": dtype, "file": path.name, "note": backend.note, **notes,
                      **measure_file(backend, path, dtype, graphs, device, export_dir)}
            record |= score_format(backend, path, data, torch_test_logits, threads, latency_runs)
        except (UserError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - one runtime's converter failing must not stop the others
            why = explain(exc, model, input_shape, calibration_x, backend, fmt, dtype, input_bits)
            out["failed"][fmt] = str(why)
            remove_unusable(backend, path, made, out["formats"].values())
            continue
        out["formats"][fmt] = record
        out["fit"][fmt] = fit_check(device, dtype, footprint(backend, dtype, record, model, macs, device))
    if not out["formats"]:
        raise NoFormat(out["failed"])
    out["preferred"] = preferred_format(list(out["formats"]), device)
    return out


class NoFormat(RuntimeError):
    """No format of the device could be exported; `failed` names each with its reason."""

    def __init__(self, failed: dict[str, str]):
        self.failed = dict(failed)
        super().__init__("; ".join(failed.values()) or "no format was asked for")


def remove_unusable(backend: Backend, path: Path, made: dict[Path, dict], kept: object) -> None:
    """A format that failed leaves no file behind (its .tflite, C pair, Vela file), unless a format that worked
    uses the same file (LiteRT and TFLite Micro share the int8 .tflite)."""
    if any(r["file"] == path.name for r in kept):  # type: ignore[attr-defined]
        return
    made.pop(path, None)
    for p in (path, *backend.companions(path)):
        p.unlink(missing_ok=True)


def torch_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    with torch.no_grad():
        logits = torch.cat([model(model_input(x[i:i + batch_size], dtype=torch.float32))
                            for i in range(0, len(x), batch_size)])
    return float((logits.argmax(1).numpy() == y).mean())


def early_fit_check(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray,
                    device: DeviceProfile, formats: list[str], input_bits: int = 8) -> dict:
    """Export the (untrained) student in the preferred format before training and fit-check it: its size and RAM
    (the TFLite Micro arena, Vela's SRAM) do not depend on training."""
    fmt = preferred_format(formats, device)
    backend, dtype = parse_format(fmt)
    model = model.cpu().eval()
    with tempfile.TemporaryDirectory() as tmp:
        record = probe_file(backend, model, input_shape, calibration_x[:32], Path(tmp), fmt, input_bits, device)
        verdict = fit_check(device, dtype, footprint(backend, dtype, record, model, count_macs(model, input_shape),
                                                     device))
    return verdict | {"format": fmt}


def reach_check(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray, device: DeviceProfile,
                fmt: str, input_bits: int = 8) -> None:
    """Before training: the (untrained) student exported in one more format and loaded by its runtime, so a format
    it cannot be made in is found now, not after training; raises Unrunnable naming what stopped it."""
    backend, _ = parse_format(fmt)
    with tempfile.TemporaryDirectory() as tmp:
        probe_file(backend, model.cpu().eval(), input_shape, calibration_x[:32], Path(tmp), fmt, input_bits, device)


def probe_file(backend: Backend, model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray,
               tmp: Path, fmt: str, input_bits: int, device: DeviceProfile) -> dict:
    """Export, measure and load the file the device would be given; a step that fails is explained (Unrunnable)."""
    dtype = fmt.rpartition("-")[2]

    def explained(step):
        try:
            return step()
        except (UserError, OSError, Unrunnable):
            raise
        except Exception as exc:  # noqa: BLE001 - the runtime cannot run this graph: say what stopped it
            raise explain(exc, model, input_shape, calibration_x, backend, fmt, dtype, input_bits) from exc

    path, _ = explained(lambda: export_file(backend, model, input_shape, calibration_x,
                                            tmp / f"probe{backend.suffix}", dtype, input_bits, {}))
    graphs = explained(lambda: ram_graphs([backend], model, input_shape, calibration_x))
    record = explained(lambda: measure_file(backend, path, dtype, graphs, device, tmp))
    explained(lambda: backend.open(path, 1))  # the runtime loads the file it will be given
    return record

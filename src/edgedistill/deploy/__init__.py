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
from edgedistill.deploy.backends import Backend, check_formats, parse_format, run_file
from edgedistill.deploy.devices import DeviceProfile, get_device, load_catalog
from edgedistill.deploy.fit import Footprint, fit_check
from edgedistill.deploy.onnx_export import export_onnx, logit_agreement, onnx_file_bytes
from edgedistill.deploy.profile import count_macs, host_threads, measure_latency, peak_activation_bytes
from edgedistill.deploy.quantize import quantize_int8, quantized_bits, quantized_input_bits
from edgedistill.deploy.reach import Unrunnable, explain
from edgedistill.errors import UserError
from edgedistill.models import count_params

__all__ = ["DeviceProfile", "ELEMENT_BYTES", "NoFormat", "Unrunnable", "get_device", "load_catalog", "check_deploy",
           "deploy_model", "early_fit_check", "device_formats", "preferred_format"]

# Bytes a weight takes in each deployable precision; int8 activations are one byte in an integer-only runtime.
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
VELA_PIP = "pip install 'edgedistill[vela]'"


def device_formats(device: DeviceProfile, override: list[str] | None = None, quantize: bool = True) -> list[str]:
    """The formats to produce: deploy.formats, else the device's; int8 ones dropped when quantization is off."""
    formats = list(override or device.formats)
    if not quantize:
        formats = [f for f in formats if not f.endswith("-int8")] or \
            list(dict.fromkeys(f.rpartition("-")[0] + "-fp32" for f in formats))
    return formats


def preferred_format(formats: list[str] | tuple[str, ...], device: DeviceProfile) -> str:
    """The format the verdict speaks for: the device's smallest precision it runs, in the order formats are listed."""
    for dtype in ("int8", "fp32"):
        for fmt in formats:
            if fmt.endswith("-" + dtype) and dtype in device.dtypes:
                return fmt
    return formats[0]


def check_deploy(formats: list[str], device: DeviceProfile, input_bits: int,
                 field_name: str = "deploy.formats") -> None:
    """Before any training: every format is known and installed, and an NPU device has its compiler and an
    accelerator the compiler knows."""
    check_formats(formats, input_bits, field_name)
    if device.npu is not None:
        import importlib.util

        if not any(f == "tflm-int8" for f in formats):
            raise UserError(f"{field_name}: device {device.name!r} has an Ethos-U NPU, which Vela compiles from "
                            "the tflm-int8 file; add tflm-int8")
        if importlib.util.find_spec("ethosu") is None:
            raise UserError(f"device: {device.name!r} needs Arm's Vela compiler, which is not installed; "
                            f"run `{VELA_PIP}`")
        from edgedistill.deploy.npu import check_accelerator

        check_accelerator(device.name, device.npu)


def estimate_ram(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[dict[str, int], bytes]:
    """Graph-walk peak activations on the fp32 ONNX graph at 4 and 1 bytes per element, and that graph."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, input_shape, Path(tmp) / "estimate.onnx")
        return {"fp32": peak_activation_bytes(fp32, 4), "int8": peak_activation_bytes(fp32, 1)}, fp32.read_bytes()


def explained_estimate(model: nn.Module, input_shape: tuple[int, ...],
                       calibration_x: np.ndarray) -> tuple[dict[str, int], bytes]:
    """estimate_ram, whose fp32 ONNX graph every format's RAM estimate reads: a model torch.onnx cannot export is
    refused naming the operator or line, like a runtime's refusal."""
    try:
        return estimate_ram(model, input_shape)
    except (UserError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - say what in the model stopped the export
        backend, _ = parse_format("onnxruntime-fp32")
        raise explain(exc, model, input_shape, calibration_x, backend, "the fp32 ONNX graph of the RAM estimate",
                      "fp32", 8) from exc


def _ort_int8_estimate(path: Path, onnx_fp32: bytes) -> int:
    """The int8 QDQ estimate, with the tensors its graph quantizes to 16 bits at two bytes."""
    wide = {name: 2 for name, bits in quantized_bits(path).items() if bits == 16}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(onnx_fp32)
        return peak_activation_bytes(fp32, 1, tensor_bytes=wide or None)


def export_file(backend: Backend, model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray,
                path: Path, dtype: str, input_bits: int, made: dict[Path, dict]) -> tuple[Path, dict]:
    """Write one format's file (once, when two runtimes load the same file: litert and tflm), plus notes."""
    if path in made:
        return path, made[path]
    notes: dict = {}
    if backend.name == "onnxruntime" and dtype == "int8" and input_bits == 16:
        try:
            backend.export(model, input_shape, calibration_x, path, dtype, input_bits=16)
        except UserError as exc:  # a model (a GRU teacher, say) that never quantizes its input stays at 8 bits
            backend.export(model, input_shape, calibration_x, path, dtype, input_bits=8)
            notes["input_bits_refused"] = str(exc)
    else:
        backend.export(model, input_shape, calibration_x, path, dtype, input_bits=input_bits)
    made[path] = notes
    return path, notes


def measure_file(backend: Backend, path: Path, dtype: str, estimate: dict[str, int], onnx_fp32: bytes,
                 device: DeviceProfile, out_dir: Path) -> dict:
    """What the file itself says: its bytes, the RAM estimate, what its runtime measures (TFLM's arena, its C
    pair) and, for an NPU, Vela's compile and report."""
    record = {"file_bytes": onnx_file_bytes(path) if backend.suffix == ".onnx" else path.stat().st_size,
              "peak_activation_bytes": estimate[dtype]}
    if backend.name == "onnxruntime" and dtype == "int8":
        record["peak_activation_bytes"] = _ort_int8_estimate(path, onnx_fp32)
        if quantized_input_bits(path) == 16:
            record["input_bits"] = 16
    if backend.extras is not None:
        record |= backend.extras(path, dtype)
    if device.npu is not None and backend.name == "tflm" and dtype == "int8":
        from edgedistill.deploy.npu import npu_deliverable, vela_compile

        record["npu"] = vela_compile(path, device.npu, out_dir)
        record |= npu_deliverable(path, out_dir / record["npu"]["file"], record["npu"])
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
                                             throughput_batch=64 if backend.speed_is_meaningful else 8)
    record["host_latency"]["meaningful"] = backend.speed_is_meaningful
    return record


def footprint(backend: Backend, dtype: str, record: dict, model: nn.Module, macs: int, device: DeviceProfile
              ) -> Footprint:
    lat = record.get("host_latency", {})
    measured_here = device.measured_on_host and backend.speed_is_meaningful and lat
    vela = record.get("npu")
    return Footprint(
        file_bytes=record["file_bytes"], estimated_ram_bytes=record["peak_activation_bytes"],
        weight_bytes=count_params(model) * ELEMENT_BYTES[dtype], macs=macs,
        measured_ram_bytes=vela["sram_bytes"] if vela else record.get("measured_ram_bytes"),
        ram_how=vela["how"] if vela else record.get("ram_how", ""),
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
    estimate, onnx_fp32 = explained_estimate(model, input_shape, calibration_x)
    out: dict = {"macs": macs, "formats": {}, "fit": {}, "failed": {},
                 "val_accuracy_torch": torch_accuracy(model, data.x_val, data.y_val)}
    threads = host_threads(device.cores)
    made: dict[Path, dict] = {}
    for fmt in formats:
        backend, dtype = parse_format(fmt)
        path = export_dir / f"{role}_{dtype}{backend.suffix}"
        try:
            path, notes = export_file(backend, model, input_shape, calibration_x, path, dtype, input_bits, made)
            record = {"runtime": backend.name, "dtype": dtype, "file": path.name, "note": backend.note, **notes,
                      **measure_file(backend, path, dtype, estimate, onnx_fp32, device, export_dir)}
            record |= score_format(backend, path, data, torch_test_logits, threads, latency_runs)
        except (UserError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - one runtime's converter failing must not stop the others
            why = explain(exc, model, input_shape, calibration_x, backend, fmt, dtype, input_bits)
            out["failed"][fmt] = str(why)
            remove_unusable(path, made, out["formats"].values())
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


def remove_unusable(path: Path, made: dict[Path, dict], kept: object) -> None:
    """A format that failed leaves no file behind (its .tflite, C pair, Vela file), unless a format that worked
    uses the same file (LiteRT and TFLite Micro share the int8 .tflite)."""
    if any(r["file"] == path.name for r in kept):  # type: ignore[attr-defined]
        return
    made.pop(path, None)
    for p in (path, path.with_suffix(".h"), path.with_suffix(".cc"), path.with_name(f"{path.stem}_vela.tflite"),
              path.with_name(f"{path.stem}_vela.h"), path.with_name(f"{path.stem}_vela.cc")):
        p.unlink(missing_ok=True)


def torch_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    with torch.no_grad():
        logits = torch.cat([model(torch.as_tensor(x[i:i + batch_size], dtype=torch.float32))
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


def probe_file(backend: Backend, model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray,
               tmp: Path, fmt: str, input_bits: int, device: DeviceProfile) -> dict:
    """Export, measure and load the file the device would be given; a step that fails is explained (Unrunnable)."""
    dtype = fmt.rpartition("-")[2]

    def explained(step):
        try:
            return step()
        except (UserError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - the runtime cannot run this graph: say what stopped it
            raise explain(exc, model, input_shape, calibration_x, backend, fmt, dtype, input_bits) from exc

    path, _ = explained(lambda: export_file(backend, model, input_shape, calibration_x,
                                            tmp / f"probe{backend.suffix}", dtype, input_bits, {}))
    estimate, onnx_fp32 = explained_estimate(model, input_shape, calibration_x)
    record = explained(lambda: measure_file(backend, path, dtype, estimate, onnx_fp32, device, tmp))
    explained(lambda: backend.open(path, 1))  # the runtime loads the file it will be given
    return record


def check_input_bits(model: nn.Module, input_shape: tuple[int, ...], calibration_x: np.ndarray,
                     input_bits: int) -> None:
    """Refuse a 16-bit input this model would never quantize, whatever the device runs, before any training."""
    if input_bits == 8:
        return
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, input_shape, Path(tmp) / "probe_fp32.onnx")
        quantize_int8(fp32, calibration_x[:32], Path(tmp) / "probe_int8.onnx", input_bits=input_bits)

"""Arm Ethos-U NPUs, measured by Arm's own compiler: Vela compiles the int8 .tflite for the named NPU configuration
and reports the SRAM and flash the model takes and its estimated inference time. Those are Vela's estimates for
the configuration, not a measurement on a board."""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgedistill.deploy.backends.base import NpuCompiler
from edgedistill.deploy.backends.tflm_c import c_pair
from edgedistill.deploy.devices import NpuConfig
from edgedistill.errors import UserError

KIB = 1024


def check_accelerator(device: str, npu: NpuConfig) -> None:
    """An accelerator Vela does not know (a typo such as ethos-u55-12) is refused before anything trains."""
    from ethosu.vela.architecture_features import Accelerator

    known = [a.value for a in Accelerator]
    if npu.accelerator_config not in known:
        raise UserError(f"device {device!r}: npu.accelerator_config {npu.accelerator_config!r} is not an accelerator "
                        f"Vela knows; choose one of {', '.join(known)}")


def npu_deliverable(tflite: Path, compiled: Path, vela: dict) -> dict:
    """The file the NPU firmware loads is Vela's compiled one: its C pair replaces the uncompiled file's, with
    Vela's SRAM figure as the arena."""
    for stale in (tflite.with_suffix(".h"), tflite.with_suffix(".cc")):
        stale.unlink(missing_ok=True)
    pair = c_pair(compiled, vela["sram_bytes"], f"Vela's SRAM figure for {vela['accelerator']} ({vela['how']})")
    return {"deliverable": compiled.name, "deliverable_bytes": compiled.stat().st_size, **pair}


def vela_compile(tflite: Path, npu: NpuConfig, out_dir: Path) -> dict:
    """`<stem>_vela.tflite` in out_dir (the file the NPU firmware loads) and Vela's summary figures."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "ethosu.vela", str(tflite), "--output-dir", tmp,
               "--accelerator-config", npu.accelerator_config, "--system-config", npu.system_config,
               "--memory-mode", npu.memory_mode]
        if npu.config_file:
            cmd += ["--config", npu.config_file]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()
            raise RuntimeError(f"vela failed: {tail[-1] if tail else 'exit ' + str(done.returncode)}")
        summary = next(Path(tmp).glob("*_summary_*.csv"))
        row = next(csv.DictReader(summary.open()))
        compiled = out_dir / f"{tflite.stem}_vela.tflite"
        shutil.copyfile(next(Path(tmp).glob("*_vela.tflite")), compiled)
    cpu_ops = [line for line in done.stdout.splitlines() if line.strip().startswith("CPU operators")]
    return {"file": compiled.name, "file_bytes": compiled.stat().st_size,
            "accelerator": row["accelerator_configuration"], "system_config": row["system_config"],
            "memory_mode": row["memory_mode"], "clock_hz": float(row["core_clock"]),
            "sram_bytes": round(float(row["sram_memory_used"]) * KIB),
            "flash_bytes": round((float(row["off_chip_flash_memory_used"])
                                  + float(row["on_chip_flash_memory_used"])) * KIB),
            "inference_ms": 1000 * float(row["inference_time"]), "cycles": int(float(row["cycles_total"])),
            "cpu_operators": cpu_ops[0].split("=", 1)[1].strip() if cpu_ops else "unknown",
            "how": f"Vela {vela_version()} estimate for {row['accelerator_configuration']}, "
                   f"{row['system_config']}, {row['memory_mode']}"}


def compile_for_npu(tflite: Path, npu: NpuConfig, out_dir: Path) -> dict:
    """Vela's compile and report (the record's `npu`), and its compiled file as the deliverable."""
    vela = vela_compile(tflite, npu, out_dir)
    return {"npu": vela, **npu_deliverable(tflite, out_dir / vela["file"], vela)}


VELA = NpuCompiler(title="Arm's Vela compiler", name="Vela", npu="an Ethos-U NPU", dtype="int8",
                   modules=("ethosu",), pip="pip install 'edgedistill[vela]'", check=check_accelerator,
                   compile=compile_for_npu)


def vela_version() -> str:
    from importlib.metadata import version

    return version("ethos-u-vela")

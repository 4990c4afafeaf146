"""Edge device profiles are data: a YAML catalog shipped with the package, or the user's own file."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgedistill.config import format_validation_error
from edgedistill.errors import UserError, first_line

CATALOG = "devices.yaml"


class NpuConfig(BaseModel):
    """An Arm Ethos-U NPU, as Vela (Arm's compiler) names its configuration."""

    model_config = ConfigDict(extra="forbid")
    compiler: Literal["vela"] = "vela"
    accelerator_config: str = Field(..., description="e.g. ethos-u55-128, ethos-u65-256")
    system_config: str = Field("internal-default", description="a system config of Vela's ini file")
    memory_mode: str = Field("internal-default", description="a memory mode of Vela's ini file")
    config_file: str | None = Field(None, description="your own Vela ini; Vela's built-in defaults otherwise")


class DeviceProfile(BaseModel):
    """What a model must fit: storage for the file, RAM for activations (and weights where they live in RAM)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    flash_bytes: int = Field(..., gt=0, description="storage available for the model file")
    ram_bytes: int = Field(..., gt=0, description="RAM available for inference")
    cores: int = Field(..., ge=1)
    dtypes: list[Literal["fp32", "fp16", "int8"]] = Field(..., min_length=1, description="deployable precisions")
    weights_in_ram: bool = Field(..., description="false where weights execute in place from flash (MCUs)")
    latency_budget_ms: float | None = Field(None, gt=0)
    macs_per_second: dict[str, float] = Field(default_factory=dict, description="indicative throughput per dtype")
    core: str | None = Field(None, description="a Cortex-M core with a calibrated latency fit (cortex-m4, cortex-m7, "
                                               "cortex-m33): latency is estimated from it, as a range")
    clock_hz: float | None = Field(None, gt=0, description="the core's clock, for the calibrated latency estimate")
    macs_source: str = ""
    measured_on_host: bool = Field(False, description="latency is measured here, not estimated from MACs")
    formats: list[str] = Field(["onnxruntime-fp32", "onnxruntime-int8"], min_length=1,
                               description="runtime-dtype files to produce; deploy.formats overrides")
    runtime_flash_bytes: int = Field(0, ge=0, description="flash the runtime and its kernels take beside the model")
    runtime_ram_bytes: int = Field(0, ge=0, description="RAM the runtime takes beyond what it measures")
    runtime_source: str = Field("", description="where the runtime figures come from")
    npu: NpuConfig | None = Field(None, description="an Ethos-U NPU: fit and latency come from Vela's report")


def _parse_catalog(text: str, source: str) -> dict[str, DeviceProfile]:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        raise UserError(f"{source}: malformed YAML; fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of device name to profile")
    profiles = {}
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise UserError(f"{source}: device {name!r} must be a mapping of fields")
        try:
            profiles[name] = DeviceProfile.model_validate({"name": name, **body})
        except ValidationError as err:
            raise UserError(format_validation_error(err, f"{source}: device {name!r}")) from None
    return profiles


def load_catalog(path: str | Path | None = None) -> dict[str, DeviceProfile]:
    """The packaged catalog, extended (or overridden by name) with the user's file when given."""
    profiles = _parse_catalog(resources.files("edgedistill.deploy").joinpath(CATALOG).read_text(), CATALOG)
    if path:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"device_catalog: file {str(p)!r} not found; point device_catalog at your YAML of "
                            "device profiles, or remove it to use the built-in devices")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"device_catalog: cannot read {str(p)!r} ({first_line(exc)}); point device_catalog at a "
                            "UTF-8 YAML file you can read, or remove it to use the built-in devices") from None
        profiles.update(_parse_catalog(text, str(p)))
    return profiles


def get_device(name: str, catalog: str | Path | None = None) -> DeviceProfile:
    profiles = load_catalog(catalog)
    if name not in profiles:
        raise UserError(f"device: unknown device {name!r}; choose one of {', '.join(profiles)} "
                        "or add it to a file given as device_catalog")
    return profiles[name]

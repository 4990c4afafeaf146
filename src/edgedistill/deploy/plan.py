"""What a run deploys, decided once from its config and device: the formats, which one the verdict speaks for, and
the width of an int8 file's input. The pipeline, the student search and `edgedistill export` all read it from here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgedistill.deploy.devices import DeviceProfile

if TYPE_CHECKING:
    from edgedistill.config import DeployConfig


def device_formats(device: DeviceProfile, override: list[str] | None = None, quantize: bool = True) -> list[str]:
    """The formats to produce: deploy.formats, else the device's; int8 ones dropped when quantization is off."""
    formats = list(override or device.formats)
    if not quantize:
        formats = [f for f in formats if not f.endswith("-int8")] or \
            list(dict.fromkeys(f.rpartition("-")[0] + "-fp32" for f in formats))
    return formats


def preferred_format(formats: list[str] | tuple[str, ...], device: DeviceProfile,
                     uses: list[str] | tuple[str, ...] | None = None) -> str:
    """The format the verdict speaks for: the device's smallest precision it runs, in the order formats are listed,
    among those the run's device uses (`uses`: a file `edgedistill export` added for another device does not)."""
    used = [f for f in formats if uses is None or f in uses] or list(formats)
    for dtype in ("int8", "fp32"):
        for fmt in used:
            if fmt.endswith("-" + dtype) and dtype in device.dtypes:
                return fmt
    return used[0]


def input_bits(deploy: DeployConfig) -> int:
    """The int8 file's input width: deploy.input_bits, or 8 when quantization is off (no int8 file is made)."""
    return deploy.input_bits if deploy.quantize else 8


@dataclass(frozen=True)
class DeployPlan:
    """The device, the formats to produce for it and the int8 input width."""

    device: DeviceProfile
    formats: tuple[str, ...]
    input_bits: int = 8

    @property
    def preferred(self) -> str:
        return preferred_format(self.formats, self.device)


def deploy_plan(deploy: DeployConfig, device: DeviceProfile, formats: list[str] | None = None) -> DeployPlan:
    """The plan of a run (its config's formats, else the device's), or of `edgedistill export --format` (`formats`,
    taken as given)."""
    chosen = formats if formats is not None else device_formats(device, deploy.formats, deploy.quantize)
    return DeployPlan(device, tuple(chosen), input_bits(deploy))

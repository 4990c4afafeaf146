"""int8 post-training static quantization with ONNX Runtime, calibrated on training samples (never test ones)."""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np

from edgedistill.deploy.onnx_export import INPUT_NAME, strip_debug_info


class ArrayCalibrationReader:
    """Feeds calibration batches to ONNX Runtime's calibrator (the CalibrationDataReader protocol)."""

    def __init__(self, x: np.ndarray, batch_size: int = 32):
        self._batches = iter([{INPUT_NAME: x[i:i + batch_size].astype(np.float32)}
                              for i in range(0, len(x), batch_size)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - part of the protocol, unused by MinMax calibration
        pass


def input_overrides(input_bits: int) -> dict:
    from onnxruntime.quantization import QuantType

    if input_bits not in (8, 16):
        raise ValueError(f"input_bits must be 8 or 16, got {input_bits}")
    return {} if input_bits == 8 else {INPUT_NAME: [{"quant_type": QuantType.QUInt16}]}


def quantize_int8(fp32_path: Path, calibration_x: np.ndarray, out_path: Path, per_channel: bool = True,
                  input_bits: int = 8) -> Path:
    """QDQ int8: signed int8 weights (per channel), unsigned int8 activations, MinMax calibration.

    input_bits=16 quantizes the network input to uint16 instead (the first layer runs 16x8), for signals whose
    spikes stretch one byte's range past the detail that matters.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    CalibrationDataReader.register(ArrayCalibrationReader)
    logging.getLogger("root").setLevel(logging.ERROR)
    tmp_out = out_path.with_name(f".{out_path.name}.tmp")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
                quantize_static(str(prepared), str(tmp_out), ArrayCalibrationReader(calibration_x),
                                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, per_channel=per_channel,
                                extra_options={"CalibTensorRangeSymmetric": False,
                                               "TensorQuantOverrides": input_overrides(input_bits)})
        strip_debug_info(tmp_out)
        tmp_out.replace(out_path)
    finally:
        tmp_out.unlink(missing_ok=True)
    return out_path

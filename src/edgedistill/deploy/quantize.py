"""int8 post-training static quantization with ONNX Runtime, calibrated on training samples (never test ones)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgedistill.deploy.onnx_export import INPUT_NAME, export_onnx, strip_debug_info
from edgedistill.errors import UserError
from edgedistill.quiet import third_party_output


class ArrayCalibrationReader:
    """Feeds calibration batches to ONNX Runtime's calibrator (the CalibrationDataReader protocol)."""

    def __init__(self, x: np.ndarray, batch_size: int = 32):
        self._batches = iter([{INPUT_NAME: x[i:i + batch_size].astype(np.float32)}
                              for i in range(0, len(x), batch_size)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - part of the protocol, unused by MinMax calibration
        pass


SHAPE_ONLY_OPS = {"Unsqueeze", "Reshape", "Flatten", "Squeeze", "Transpose", "Identity"}


def input_chain(model) -> list[str]:
    """The network input and the tensors that only reshape it (a 1-D series gains its channel axis first): the
    first layer reads one of these."""
    names = [INPUT_NAME]
    for node in model.graph.node:  # ONNX keeps nodes in topological order
        if node.op_type in SHAPE_ONLY_OPS and node.input and node.input[0] in names:
            names.extend(node.output)
    return names


def input_overrides(input_bits: int, model) -> dict:
    from onnxruntime.quantization import QuantType

    if input_bits not in (8, 16):
        raise ValueError(f"input_bits must be 8 or 16, got {input_bits}")
    return {} if input_bits == 8 else {name: [{"quant_type": QuantType.QUInt16}] for name in input_chain(model)}


def quantized_bits(path: Path) -> dict[str, int]:
    """Bits of every tensor a QuantizeLinear reads in a QDQ model, from its zero point's type (a zero point that is
    not an initializer counts as 8)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    zero_types = {i.name: i.data_type for i in model.graph.initializer}
    wide = (onnx.TensorProto.UINT16, onnx.TensorProto.INT16)
    return {node.input[0]: 16 if len(node.input) > 2 and zero_types.get(node.input[2]) in wide else 8
            for node in model.graph.node if node.op_type == "QuantizeLinear"}


def quantized_input_bits(path: Path) -> int | None:
    """How many bits the int8 model takes its input in, read off the graph: 8 or 16, or None when no
    QuantizeLinear reads it (a GRU or an embedding lookup takes it unquantized)."""
    import onnx

    bits = quantized_bits(path)
    reads = [bits[name] for name in input_chain(onnx.load(str(path), load_external_data=False)) if name in bits]
    return max(reads) if reads else None


def quantize_int8(fp32_path: Path, calibration_x: np.ndarray, out_path: Path, per_channel: bool = True,
                  input_bits: int = 8) -> Path:
    """QDQ int8: signed int8 weights (per channel), unsigned int8 activations, MinMax calibration.

    input_bits=16 quantizes the network input to uint16 instead (the layers reading it run 16x8), for signals whose
    spikes stretch one byte's range past the detail that matters; a model whose input stays unquantized is refused.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    CalibrationDataReader.register(ArrayCalibrationReader)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out_path.with_name(f".{out_path.name}.tmp")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            with third_party_output():
                quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
                quantize_static(str(prepared), str(tmp_out), ArrayCalibrationReader(calibration_x),
                                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, per_channel=per_channel,
                                extra_options={"CalibTensorRangeSymmetric": False,
                                               "TensorQuantOverrides": input_overrides(input_bits, onnx.load(
                                                   str(prepared), load_external_data=False))})
        strip_debug_info(tmp_out)
        if input_bits == 16 and (got := quantized_input_bits(tmp_out)) != 16:
            how = "unquantized (it reaches no Conv or Linear first, as in a GRU or an embedding lookup)" \
                if got is None else "in 8 bits (ONNX Runtime did not apply the 16-bit override)"
            raise UserError(f"deploy.input_bits: 16, but this model takes its input {how}; set it to 8")
        tmp_out.replace(out_path)
    finally:
        tmp_out.unlink(missing_ok=True)
    return out_path


def check_input_bits(model, input_shape: tuple[int, ...], calibration_x: np.ndarray, input_bits: int) -> None:
    """Refuse a 16-bit input this model would never quantize, whatever the device runs, before any training."""
    if input_bits == 8:
        return
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, input_shape, Path(tmp) / "probe_fp32.onnx")
        quantize_int8(fp32, calibration_x[:32], Path(tmp) / "probe_int8.onnx", input_bits=input_bits)

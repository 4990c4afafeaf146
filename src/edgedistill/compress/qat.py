"""Quantization-aware fine-tuning, for when int8 post-training quantization costs too much accuracy.

The student trains on with the int8 grid simulated: weights fake-quantized per output channel (symmetric, as ONNX
Runtime quantizes them) and every Conv/Linear input fake-quantized per tensor (asymmetric uint8, ranges tracked as
a running min/max; the layers that read the network input take it in uint16 when the export does).
Gradients pass straight through the rounding. Afterwards the weights are left on the grid, so
ONNX Runtime's static quantization of the exported model reproduces them exactly (BN folding rescales whole output
channels, which keeps a per-channel symmetric grid intact).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

QUANTIZED = (nn.Conv1d, nn.Conv2d, nn.Linear)


class WeightFakeQuant(nn.Module):
    """Symmetric int8 rounding with a straight-through gradient: per output channel, or per tensor as ONNX Runtime
    quantizes an embedding table (its Gather)."""

    def __init__(self, per_channel: bool = True):
        super().__init__()
        self.per_channel = per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, w.dim())) if self.per_channel else tuple(range(w.dim()))
        scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-8) / 127.0
        return w + (torch.clamp(torch.round(w / scale), -127, 127) * scale - w).detach()


class InputFakeQuant:
    """A forward pre-hook: asymmetric uint8 fake quantization of a layer's input, with a running min/max kept in
    the layer's buffers `input_lo`/`input_hi`, so checkpoints and resume carry the ranges."""

    def __init__(self, momentum: float = 0.1, bits: int = 8):
        self.momentum = momentum
        self.levels = 2 ** bits - 1

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = inputs[0]
        lo, hi = x.detach().amin().clamp(max=0), x.detach().amax().clamp(min=0)
        fresh = bool(torch.isnan(module.input_lo))
        if fresh or module.training:
            m = 1.0 if fresh else self.momentum
            module.input_lo.copy_((1 - m) * module.input_lo.nan_to_num() + m * lo)
            module.input_hi.copy_((1 - m) * module.input_hi.nan_to_num() + m * hi)
        scale = ((module.input_hi - module.input_lo) / self.levels).clamp_min(1e-8)
        zero = torch.round(-module.input_lo / scale)
        xq = (torch.clamp(torch.round(x / scale) + zero, 0, self.levels) - zero) * scale
        return (x + (xq - x).detach(), *inputs[1:])


RANGE_BUFFERS = ("input_lo", "input_hi")


# ONNX Runtime keeps their input's quantization on their output
PASS_THROUGH = (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Identity,
                nn.Dropout)


def layers_reading_the_input(model: nn.Module, example: torch.Tensor) -> set[nn.Module]:
    """The Conv/Linear layers whose input is the network input, a view of it, or a max-pool of it, found by one probe
    forward pass: in ONNX Runtime these read the 16-bit input. Registration order would be wrong for a recurrent
    net (its head comes first) and an InceptionTime block (several branches read the input)."""
    wide, kept, found = {example.untyped_storage().data_ptr()}, [example], set()

    def reads_input(inputs: tuple) -> bool:
        return bool(inputs) and torch.is_tensor(inputs[0]) and inputs[0].untyped_storage().data_ptr() in wide

    def mark(module: nn.Module, inputs: tuple) -> None:
        if reads_input(inputs):
            found.add(module)

    def carry(module: nn.Module, inputs: tuple, output) -> None:
        if reads_input(inputs) and torch.is_tensor(output):
            kept.append(output)  # held, so that no later tensor reuses its memory address
            wide.add(output.untyped_storage().data_ptr())

    handles = [m.register_forward_pre_hook(mark) for m in model.modules() if isinstance(m, QUANTIZED)]
    handles += [m.register_forward_hook(carry) for m in model.modules() if isinstance(m, PASS_THROUGH)]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found


def attach_fake_quant(model: nn.Module, input_bits: int = 8, example: torch.Tensor | None = None) -> list:
    """Simulate int8 in place; returns the hook handles so `detach_fake_quant` can undo it. With input_bits=16 the
    layers that read the network input (found by a probe pass on `example`) see 16 bits, as in the export."""
    if input_bits == 16 and example is None:
        raise ValueError("input_bits=16 needs an example input to find the layers that read it")
    wide = layers_reading_the_input(model, example) if input_bits == 16 else set()
    handles = []
    for module in model.modules():
        if isinstance(module, QUANTIZED):
            parametrize.register_parametrization(module, "weight", WeightFakeQuant())
            for name in RANGE_BUFFERS:
                module.register_buffer(name, torch.tensor(float("nan"), device=module.weight.device))
            handles.append(module.register_forward_pre_hook(InputFakeQuant(bits=16 if module in wide else 8)))
        elif isinstance(module, nn.Embedding):  # its input is ids; only the table is quantized
            parametrize.register_parametrization(module, "weight", WeightFakeQuant(per_channel=False))
    return handles


def detach_fake_quant(model: nn.Module, handles: list) -> None:
    """Remove the simulation, leaving each weight at its quantized value."""
    for h in handles:
        h.remove()
    for module in model.modules():
        if isinstance(module, (*QUANTIZED, nn.Embedding)) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            for name in RANGE_BUFFERS:
                module._buffers.pop(name, None)

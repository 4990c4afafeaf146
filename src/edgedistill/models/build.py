"""Building a configured model against a dataset: its arguments completed from the data, its inputs and outputs
checked, so a mismatch fails in one line before any training."""
from __future__ import annotations

import copy
import inspect

import torch
import torch.nn as nn

from edgedistill.config import ModelConfig
from edgedistill.data import DataSplits
from edgedistill.errors import UserError, first_line
from edgedistill.models import create_model, list_models, resolve_factory
from edgedistill.models.evaluate import model_input


def tokenizer_args(mcfg: ModelConfig, role: str, data: DataSplits) -> dict:
    """A text model's embedding must cover every id the dataset's tokenizer makes and pad where it pads."""
    args = dict(mcfg.args)
    if not data.text or "vocab_size" not in data.text:
        return args
    accepted = inspect.signature(resolve_factory(mcfg.model, f"{role}.model")).parameters
    for key in ("vocab_size", "pad_id"):
        if key in accepted and key not in args:
            args[key] = data.text[key]
    given = mcfg.args.get("vocab_size")
    if given is not None and (not isinstance(given, int) or isinstance(given, bool)):
        raise UserError(f"{role}.args.vocab_size: {given!r} is not a whole number of rows; remove it to take the "
                        "tokenizer's size")
    if given is not None and given < data.text["vocab_size"]:
        raise UserError(f"{role}.args.vocab_size: {given} rows, but the tokenizer makes "
                        f"{data.text['vocab_size']} ids; remove it to take the tokenizer's size")
    return args


def build_model(mcfg: ModelConfig, role: str, data: DataSplits, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    args = tokenizer_args(mcfg, role, data)
    try:
        model = create_model(mcfg.model, data.input_shape, data.num_classes, args, field=f"{role}.model")
    except UserError:
        raise
    except Exception as exc:  # a factory may reject its arguments with any exception type
        raise UserError(f"{role}.args: {first_line(exc)}; check the model's arguments") from None
    check_input_kind(mcfg.model, role, data)
    check_output_classes(model, role, data)
    return model


def check_input_kind(spec: str, role: str, data: DataSplits) -> None:
    """Token ids and numbers must not be mixed up silently: a zoo model states what it reads."""
    entry = list_models().get(spec)
    if entry is None:  # the user's own model: its factory knows what it reads
        return
    if data.text and "tokens" not in entry.inputs:
        raise UserError(f"{role}.model: {spec!r} reads {', '.join(entry.inputs)}, but dataset {data.name!r} is token "
                        "ids; use a text model (hf_text, text_cnn)")
    if not data.text and entry.inputs == ("tokens",):
        raise UserError(f"{role}.model: {spec!r} reads token ids, but dataset {data.name!r} is not text")


def check_output_classes(model: nn.Module, role: str, data: DataSplits) -> None:
    """Forward passes on training rows: the model must accept the data and give one logit per class, in eval mode
    on two samples (scoring), in training mode on two, and on a batch of one (an epoch's last batch can hold one)."""
    other = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.dtype != torch.float32})
    if other:  # the data and every trainer are float32; mixed precision is train.precision's, not the weights'
        raise UserError(f"{role}.model: its weights are {', '.join(other)}, but models are built in float32 (the data "
                        f"is float32); drop the .half() or .to(dtype) from the factory, and set {role}.train.precision "
                        "for mixed-precision training")
    out = forward_probe(model.eval(), data.x_train[:2], role, "")
    if not isinstance(out, torch.Tensor):
        raise UserError(f"{role}.model: forward returns {type(out).__name__}, not a tensor of logits; return only "
                        "the logits (wrap the model to drop auxiliary outputs)")
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError(f"{role}.model: has no trainable parameters, so there is nothing to train; check the "
                        "model factory")
    if out.dim() != 2 or out.shape[1] != data.num_classes:
        raise UserError(f"{role}.model: outputs {tuple(out.shape[1:])} logits per sample, but dataset "
                        f"{data.name!r} has {data.num_classes} classes; teacher and student must both have "
                        f"{data.num_classes} outputs")
    check_training_and_single_row(model, role, data)


def forward_probe(model: nn.Module, rows, role: str, when: str):
    """One forward pass without gradients on a copy of the rows; a model that refuses them is named in one line."""
    with torch.no_grad():
        try:
            return model(model_input(rows))
        except Exception as exc:
            raise UserError(f"{role}.model: does not accept inputs of shape {tuple(rows.shape[1:])}{when} "
                            f"({first_line(exc)})") from None


def check_training_and_single_row(model: nn.Module, role: str, data: DataSplits) -> None:
    """The passes training makes that the eval check does not: training mode (GoogLeNet's aux logits come only
    there) and a batch of one row (.squeeze() drops its batch axis), run on a copy of the model under a forked RNG,
    so its weights, batch-norm statistics and every later random draw are as if they never ran."""
    try:
        probe = copy.deepcopy(model)
    except Exception:  # noqa: BLE001 - a module that cannot be copied keeps the eval check alone
        return
    rows = data.x_train[:2]
    want = f"a tensor of shape (batch, {data.num_classes})"
    with torch.random.fork_rng(devices=[]):
        for mode, n, when in ((True, 2, " in training mode"), (False, 1, " on a batch of 1 sample")):
            if len(rows) < n:
                continue
            out = forward_probe(probe.train(mode), rows[:n], role, when)
            if not isinstance(out, torch.Tensor):
                raise UserError(f"{role}.model: forward returns {type(out).__name__}{when}, not {want}; return "
                                "only the logits in every mode (drop auxiliary outputs, e.g. aux_logits=False)")
            if tuple(out.shape) != (n, data.num_classes):
                raise UserError(f"{role}.model: forward returns shape {tuple(out.shape)}{when}, not "
                                f"({n}, {data.num_classes}); keep the batch axis (squeeze only the axes you mean, "
                                "e.g. .squeeze(-1), or use .flatten(1))")

"""Building a configured model against a dataset: its arguments completed from the data, its inputs and outputs
checked, so a mismatch fails in one line before any training."""
from __future__ import annotations

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
    """A forward pass on two samples: the model must accept the data and give one logit per class."""
    model.eval()
    with torch.no_grad():
        try:
            out = model(model_input(data.x_train[:2]))
        except Exception as exc:
            raise UserError(f"{role}.model: does not accept inputs of shape {data.input_shape} "
                            f"({first_line(exc)})") from None
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

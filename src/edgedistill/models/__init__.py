"""Models by name (timm-style registry) or by import path 'pkg.module:factory'.

Every factory takes (input_shape, num_classes, **args) and returns an nn.Module whose forward gives logits,
so teachers, students and user models are interchangeable. input_shape excludes the batch axis:
(F,) tabular features, (C, L) sequences, (C, H, W) images.
"""
from __future__ import annotations

import importlib
import inspect
import traceback
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from edgedistill.errors import UserError, accepted_args

Factory = Callable[..., nn.Module]
ALL_INPUTS = ("features", "sequence", "image")


@dataclass(frozen=True)
class ModelEntry:
    factory: Factory
    side: Side  # the side the zoo suggests it for: a teacher or a student
    family: str  # cnn, rnn, transformer, shallow, lightweight
    summary: str
    inputs: tuple[str, ...] = ALL_INPUTS  # what it reads: features (F,), sequence (C, L), image (C, H, W), tokens (L,)


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, side: Side, family: str, summary: str,
                   inputs: tuple[str, ...] = ALL_INPUTS) -> Callable[[Factory], Factory]:
    def wrap(fn: Factory) -> Factory:
        _MODELS[name] = ModelEntry(fn, side, family, summary, inputs)
        return fn

    return wrap


def list_models() -> dict[str, ModelEntry]:
    return dict(sorted(_MODELS.items()))


def _import_factory(spec: str, field: str) -> Factory:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"{field}: cannot import module {module_name!r} ({exc}); check the import path") from None
    except SyntaxError as exc:
        raise UserError(f"{field}: {exc.filename}:{exc.lineno}: SyntaxError: {exc.msg}; fix the file that "
                        f"{module_name!r} is imported from") from None
    except Exception as exc:  # the module's own top-level code failed while importing
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise UserError(f"{field}: importing {module_name!r} failed at {where.filename}:{where.lineno} "
                        f"({type(exc).__name__}: {exc}); fix that module") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"{field}: module {module_name!r} has no callable {attr!r}")
    return factory


def resolve_factory(spec: str, field: str = "model") -> Factory:
    if ":" in spec:
        return _import_factory(spec, field)
    if spec not in _MODELS:
        raise UserError(f"{field}: unknown model {spec!r}; choose one of {', '.join(sorted(_MODELS))} "
                        "or give an import path 'pkg.module:factory'")
    return _MODELS[spec].factory


def create_model(spec: str, input_shape: tuple[int, ...], num_classes: int, args: dict | None = None,
                 field: str = "model") -> nn.Module:
    """Build a model; a user factory gets input_shape/num_classes only if its signature asks for them."""
    factory = resolve_factory(spec, field)
    kwargs = dict(args or {})
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in (("input_shape", tuple(input_shape)), ("num_classes", num_classes)):
        if takes_any or key in params:
            kwargs.setdefault(key, value)
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        args_field = field[: -len(".model")] + ".args" if field.endswith(".model") else "args"
        hint = "" if takes_any else "; " + accepted_args(params, args_field, skip=("input_shape", "num_classes"))
        raise UserError(f"{args_field}: bad arguments for model {spec!r} ({exc}){hint}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{field} {spec!r}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


from edgedistill.models import cnn, inception, rnn, text, transformer, shallow, mobile  # noqa: E402,F401  (registers the zoo)
from edgedistill.roles import Side

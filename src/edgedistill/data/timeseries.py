"""Sensor and signal time series from the UCR/UEA archive, as bundled in aeon's wheel (no network).

Series come as (N, channels, length) on the archive's official train/test split. Variable-length sets (such as
JapaneseVowels) are padded with zeros after standardisation, or cropped, to one length fixed by the training split.
Standardisation is per channel, fitted on the training split only.
"""
from __future__ import annotations

import numpy as np

from edgedistill.data import RawSplits, encode_labels, register_dataset
from edgedistill.data.forms import InputForm
from edgedistill.errors import UserError, first_line

# name in configs -> (aeon's name, one-line summary)
AEON_SETS = {
    "basic_motions": ("BasicMotions", "accelerometer and gyroscope, 6 x 100, 4 activities, 40/40"),
    "acsf1": ("ACSF1", "appliance power draw, 1 x 1460, 10 appliances, 100/100"),
    "italy_power_demand": ("ItalyPowerDemand", "daily electricity demand, 1 x 24, 2 seasons, 67/1029"),
    "osu_leaf": ("OSULeaf", "leaf outlines as 1-D series, 1 x 427, 6 species, 200/242"),
    "japanese_vowels": ("JapaneseVowels", "12 LPC cepstra, variable length 7-29, 9 speakers, 270/370"),
}


def _load_split(name: str, split: str) -> tuple[list[np.ndarray] | np.ndarray, np.ndarray]:
    try:
        from aeon.datasets import load_classification
    except ImportError:
        raise UserError("data.name: time-series sets need aeon; install it with `pip install "
                        "'edgedistill[timeseries]'`") from None
    try:
        return load_classification(name, split=split)
    except Exception as exc:  # aeon would try a download for a set it does not bundle; report it, don't retry
        raise UserError(f"data.options.dataset: aeon cannot load {name!r} offline ({first_line(exc)}); use one of "
                        f"the bundled sets, e.g. {', '.join(v[0] for v in AEON_SETS.values())}") from None


def fixed_length(series: list[np.ndarray] | np.ndarray, length: int) -> np.ndarray:
    """Zero-pad at the end, or crop the end, each (channels, L) series to `length`."""
    out = np.zeros((len(series), series[0].shape[0], length), dtype=np.float32)
    for i, s in enumerate(series):
        n = min(length, s.shape[-1])
        out[i, :, :n] = s[:, :n]
    return out


def series_stats(train: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over every time step of the training series only."""
    steps = np.concatenate([s for s in train], axis=-1)
    return steps.mean(axis=-1, keepdims=True), steps.std(axis=-1, keepdims=True) + 1e-8


def series_form(mean: np.ndarray, std: np.ndarray) -> InputForm:
    """A pool of series (N, channels, length), of the length the labelled series were padded or cropped to,
    standardised with the training split's statistics."""
    return InputForm("arrays", arrays=lambda x: ((x.astype(np.float32) - mean) / std).astype(np.float32))


def load_aeon(dataset: str, length: int | None = None) -> RawSplits:
    """One aeon-bundled set; `length` pads or crops every series (default: the longest training series)."""
    x_tr, y_tr = _load_split(dataset, "train")
    x_te, y_te = _load_split(dataset, "test")
    x_tr = [np.asarray(s, dtype=np.float32) for s in x_tr]
    x_te = [np.asarray(s, dtype=np.float32) for s in x_te]
    if not all(np.isfinite(s).all() for s in x_tr + x_te):
        raise UserError(f"data.options.dataset: {dataset} has missing (NaN) values; choose a set without gaps or "
                        "fill them first")
    if length is not None and length < 1:
        raise UserError(f"data.options.length: must be a positive number of time steps, got {length}")
    mean, std = series_stats(x_tr)
    x_tr, x_te = [(s - mean) / std for s in x_tr], [(s - mean) / std for s in x_te]
    target = length or max(s.shape[-1] for s in x_tr)
    y_tr, y_te, classes = encode_labels(y_tr, y_te, f"dataset {dataset!r}")
    lengths = sorted({s.shape[-1] for s in x_tr + x_te})
    shape = f"{x_tr[0].shape[0]} x {target}" + (f" (from lengths {lengths[0]}-{lengths[-1]})" if len(lengths) > 1
                                                 else "")
    return RawSplits(fixed_length(x_tr, target), y_tr, fixed_length(x_te, target), y_te, classes,
                     f"{dataset} (UCR/UEA archive via aeon), official {len(x_tr)}/{len(x_te)} split, {shape}, "
                     "standardised per channel on train", form=series_form(mean, std))


@register_dataset("aeon", "a UCR/UEA time-series set bundled with aeon (options.dataset, e.g. ACSF1)")
def load_aeon_by_name(path: str | None = None, dataset: str | None = None, length: int | None = None) -> RawSplits:
    if not dataset:
        raise UserError("data.options.dataset: name the aeon set to load, e.g. ACSF1 or BasicMotions")
    return load_aeon(dataset, length)


def _register(key: str, aeon_name: str, summary: str) -> None:
    @register_dataset(key, f"{aeon_name} (UCR/UEA via aeon): {summary}")
    def load(path: str | None = None, length: int | None = None) -> RawSplits:
        return load_aeon(aeon_name, length)


for _key, (_name, _summary) in AEON_SETS.items():
    _register(_key, _name, _summary)

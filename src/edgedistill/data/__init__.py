"""Datasets by name: each source module registers a loader that returns the official train/test split.

Validation is always carved from the training split here, so no loader can leak the test set into a choice.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgedistill.data.rows import stack_rows, take_rows
from edgedistill.data.forms import InputForm
from edgedistill.data.unlabeled import labeled_split, read_unlabeled
from edgedistill.errors import UserError, accepted_args


@dataclass
class RawSplits:
    """What a loader returns: the source's own train/test split, float32 inputs (or packed images that read as
    float32, data/rows.py) and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    description: str = ""
    text: dict | None = None  # text sets: {"tokenizer": folder, "max_length": n}, saved beside the exports
    pixel_stats: tuple | None = None  # images: per-channel mean and std of [0, 1] pixels that standardised them
    form: InputForm | None = None  # how raw inputs become model inputs: an unlabelled pool goes the same way


@dataclass
class DataSplits:
    """Train/validation/test arrays ready for a model; input_shape excludes the batch axis."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    description: str = ""
    text: dict | None = None
    pixel_stats: tuple | None = None
    x_pool: object = None  # unlabelled training rows, the distilled models' transfer set (data/unlabeled.py)
    pool: dict = field(default_factory=dict)  # where the pool's rows came from: held_out, file, path

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_pool(self) -> int:
        return 0 if self.x_pool is None else len(self.x_pool)

    def training_rows(self, with_pool: bool) -> tuple:
        """The rows a model trains on: the labelled ones, then (with_pool) the pool's, whose target is -1."""
        if not with_pool or self.x_pool is None:
            return self.x_train, self.y_train
        return (stack_rows([self.x_train, self.x_pool]),
                np.concatenate([self.y_train, np.full(self.n_pool, -1, dtype=self.y_train.dtype)]))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "n_train": int(len(self.y_train)),
            "n_val": int(len(self.y_val)),
            "n_test": int(len(self.y_test)),
            "n_unlabeled": self.n_pool,
            "unlabeled": self.pool,
        }


Loader = Callable[..., RawSplits]
_DATASETS: dict[str, tuple[Loader, str]] = {}


def register_dataset(name: str, summary: str) -> Callable[[Loader], Loader]:
    def wrap(fn: Loader) -> Loader:
        _DATASETS[name] = (fn, summary)
        return fn

    return wrap


def list_datasets() -> dict[str, str]:
    return {name: summary for name, (_, summary) in sorted(_DATASETS.items())}


def _check_raw(name: str, raw: RawSplits) -> None:
    n_classes = len(raw.class_names)
    for split, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        if len(x) != len(y):
            raise UserError(f"dataset {name!r}: {split} has {len(x)} inputs but {len(y)} labels; fix the data files")
        if len(y) == 0:
            raise UserError(f"dataset {name!r}: the {split} split is empty; check the data files")
        if y.min() < 0 or y.max() >= n_classes:
            raise UserError(
                f"dataset {name!r}: {split} labels must lie in 0..{n_classes - 1}, found {int(y.min())}..{int(y.max())}"
            )
    if raw.x_train.shape[1:] != raw.x_test.shape[1:]:
        raise UserError(
            f"dataset {name!r}: train inputs have shape {raw.x_train.shape[1:]} but test inputs {raw.x_test.shape[1:]}"
        )


def _can_stratify(y: np.ndarray, test_fraction: float) -> bool:
    counts = np.bincount(y)
    present = int((counts > 0).sum())
    n_test = int(np.ceil(test_fraction * len(y)))
    return counts[counts > 0].min() >= 2 and n_test >= present and len(y) - n_test >= present


def fixed_split(x: np.ndarray, y: np.ndarray, test_fraction: float, source: str):
    """The held-out test split of a source without one: stratified when possible, fixed by seed 0."""
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"{source}: test_fraction must lie between 0 and 1, got {test_fraction}")
    if len(y) < 2 or int(np.ceil(test_fraction * len(y))) >= len(y):
        raise UserError(f"{source}: {len(y)} samples are too few to hold out a test split")
    stratify = y if _can_stratify(np.unique(y, return_inverse=True)[1], test_fraction) else None
    from sklearn.model_selection import train_test_split
    return train_test_split(x, y, test_size=test_fraction, random_state=0, stratify=stratify)


def label_order(label: str) -> tuple:
    """Numeric labels in numeric order ('2' before '10', '-1' before '0'), then the rest alphabetically."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def encode_labels(y_train, y_test, source: str, last: str | None = None,
                  num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The one label encoder: class indices for any labels, classes ordered by label_order (`last` moved to the
    end, e.g. a diagnosis). A test label never seen in training is refused, since it would make a class with no
    training samples. With num_classes, integer labels are taken as class indices 0..num_classes-1."""
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if num_classes is not None:
        both = np.concatenate([y_train, y_test])
        if not np.issubdtype(both.dtype, np.integer):
            raise UserError(f"{source}: options.num_classes needs integer class indices, found {both.dtype} labels")
        if both.min() < 0 or both.max() >= num_classes:
            raise UserError(f"{source}: integer labels must be class indices 0..{num_classes - 1} "
                            f"(options.num_classes), found {int(both.min())}..{int(both.max())}")
        return y_train.astype(np.int64), y_test.astype(np.int64), [str(i) for i in range(num_classes)]
    y_train, y_test = [str(v) for v in y_train], [str(v) for v in y_test]
    classes = sorted(set(y_train), key=label_order)
    if last is not None:
        if last not in classes:
            raise UserError(f"data.options.positive: {last!r} is not a label of {source}; its labels are {classes}")
        classes = [c for c in classes if c != last] + [last]
    unseen = set(y_test) - set(classes)
    if unseen:
        raise UserError(f"{source}: test labels {sorted(unseen, key=label_order)} never occur in the training "
                        "split, so they would be classes with no training samples; fix the labels or the split")
    index = {c: i for i, c in enumerate(classes)}
    return (np.array([index[v] for v in y_train], dtype=np.int64), np.array([index[v] for v in y_test], dtype=np.int64),
            classes)


def _subset(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A stratified subset with a fixed seed, for smoke runs and tests on tiny data."""
    if n is None or n >= len(y):
        return x, y
    stratify = y if _can_stratify(y, n / len(y)) else None
    from sklearn.model_selection import train_test_split

    _, rows = train_test_split(np.arange(len(y)), test_size=n, random_state=0, stratify=stratify)
    return take_rows(x, rows), y[rows]


def check_every_class_trains(name: str, classes: list[str], y: np.ndarray, train_rows: np.ndarray,
                             limit_train: int | None, val_fraction: float) -> None:
    """A class with no training row is a class nothing teaches: refused, naming it and what left it empty."""
    left = np.bincount(y[train_rows], minlength=len(classes))
    empty = [classes[c] for c in np.flatnonzero(left == 0)]
    if not empty:
        return
    had = np.bincount(y, minlength=len(classes))
    names = ", ".join(repr(c) for c in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
    if all(had[classes.index(c)] == 0 for c in empty):
        why = "in the data's training split; add samples of it or remove it"
    elif limit_train is not None:
        why = f"after data.limit_train: {limit_train} and the validation split; raise data.limit_train"
    else:
        why = (f"after the validation split (data.val_fraction: {val_fraction}) took its only samples; add "
               "training samples of it")
    raise UserError(f"dataset {name!r}: class {names} has no training rows {why}")


def load_dataset(name: str, path: str | None = None, val_fraction: float = 0.1, seed: int = 0,
                 options: dict | None = None, limit_train: int | None = None,
                 limit_test: int | None = None, labeled_fraction: float | None = None,
                 labeled_count: int | None = None, unlabeled: str | None = None) -> DataSplits:
    """Load a registered dataset and carve a stratified validation split from its training part; then, when
    asked, keep the labels of a share of the training rows and read an unlabelled pool (data/unlabeled.py)."""
    if name not in _DATASETS:
        raise UserError(f"data.name: unknown dataset {name!r}; choose one of {', '.join(sorted(_DATASETS))}")
    loader, _ = _DATASETS[name]
    try:
        raw = loader(path=path, **(options or {}))
    except TypeError as exc:
        takes = accepted_args(inspect.signature(loader).parameters, "data.options", skip=("path",))
        raise UserError(f"data.options for {name!r}: {str(exc).replace(loader.__name__ + '()', 'the loader')}; "
                        f"{takes}") from None
    _check_raw(name, raw)
    raw.x_train, raw.y_train = _subset(raw.x_train, raw.y_train, limit_train)
    raw.x_test, raw.y_test = _subset(raw.x_test, raw.y_test, limit_test)
    n_val = int(np.ceil(val_fraction * len(raw.y_train)))
    if n_val >= len(raw.y_train):
        raise UserError(f"dataset {name!r}: {len(raw.y_train)} training samples are too few to carve a validation "
                        "split from; add data or lower data.val_fraction")
    stratify = raw.y_train if _can_stratify(raw.y_train, val_fraction) else None
    from sklearn.model_selection import train_test_split

    tr, val = train_test_split(np.arange(len(raw.y_train)), test_size=val_fraction, random_state=seed,
                               stratify=stratify)  # by row, so a packed split is never decoded here
    check_every_class_trains(name, raw.class_names, raw.y_train, tr, limit_train, val_fraction)
    data = DataSplits(name, take_rows(raw.x_train, tr), raw.y_train[tr], take_rows(raw.x_train, val),
                      raw.y_train[val], raw.x_test, raw.y_test, raw.class_names, raw.description, raw.text,
                      raw.pixel_stats)
    return with_pool(data, raw.form, seed, labeled_fraction, labeled_count, unlabeled)


def with_pool(data: DataSplits, form: InputForm | None, seed: int, fraction: float | None, count: int | None,
              unlabeled: str | None) -> DataSplits:
    """The unlabelled pool: training rows whose labels are set aside (a stratified share keeps them, by the split
    seed), then the rows of data.unlabeled, prepared as the labelled rows were."""
    parts, info = [], {}
    if fraction is not None or count is not None:
        kept, held = labeled_split(data.y_train, fraction, count, seed, data.class_names)
        parts.append(take_rows(data.x_train, held))
        data.x_train, data.y_train = take_rows(data.x_train, kept), data.y_train[kept]
        info |= {"held_out": int(len(held)), "labeled_fraction": fraction, "labeled_count": count}
    if unlabeled is not None:
        rows = read_unlabeled(unlabeled, form, data.name, data.input_shape, data.x_train)
        parts.append(rows)
        info |= {"file": int(len(rows)), "path": unlabeled}
    if parts:
        data.x_pool, data.pool = stack_rows(parts), info
    return data


# importing the source modules registers their loaders
from edgedistill.data import builtin, files, image_folder, tabular, text, timeseries  # noqa: E402,F401

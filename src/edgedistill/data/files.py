"""The user's own data: an .npz of arrays, a CSV of features plus a label column, or a folder of images per class."""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from edgedistill.data import RawSplits, fixed_split, register_dataset
from edgedistill.errors import UserError, first_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _require_path(name: str, path: str | None, kind: str) -> Path:
    if not path:
        raise UserError(f"data.path: dataset {name!r} reads {kind}; set data.path to it")
    p = Path(path)
    if not p.exists():
        raise UserError(f"data.path: {path!r} does not exist; point it at {kind}")
    return p


def _encode_labels(y_train: np.ndarray, y_test: np.ndarray, source: Path,
                   num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels map to their sorted distinct values (so 1-based or sparse integer labels make no phantom classes);
    with num_classes given, integer labels are class indices 0..num_classes-1 and are range-checked."""
    both = np.concatenate([y_train, y_test])
    if np.issubdtype(both.dtype, np.integer) and num_classes is not None:
        if both.min() < 0 or both.max() >= num_classes:
            raise UserError(f"{source}: integer labels must be class indices 0..{num_classes - 1} "
                            f"(options.num_classes), found {int(both.min())}..{int(both.max())}")
        return y_train.astype(np.int64), y_test.astype(np.int64), [str(i) for i in range(num_classes)]
    values = np.unique(both)  # numeric order for numbers, lexicographic for strings
    return (np.searchsorted(values, y_train).astype(np.int64), np.searchsorted(values, y_test).astype(np.int64),
            [str(v) for v in values])


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (or per-feature) standardisation fitted on the training split only."""
    axes = (0,) if x_train.ndim == 2 else (0,) + tuple(range(2, x_train.ndim))
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True) + 1e-8
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def _as_model_layout(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """(N,F) features, (N,C,L) sequences, (N,C,H,W) images; (N,H,W) uint8 and NHWC images are rearranged."""
    if x.ndim < 2 or x.ndim > 4:
        raise UserError(f"{path}: array {key!r} has shape {x.shape}; expected (N,F), (N,C,L), (N,H,W) or (N,C,H,W)")
    if x.ndim == 3 and x.dtype == np.uint8:
        x = x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    return x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)


@register_dataset("npz", "your arrays: an .npz with x_train, y_train, x_test, y_test (set data.path)")
def load_npz(path: str | None = None, standardize: bool = True, num_classes: int | None = None) -> RawSplits:
    p = _require_path("npz", path, "an .npz file with x_train, y_train, x_test, y_test")
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
    x_train = _as_model_layout(arrays["x_train"], "x_train", p)
    x_test = _as_model_layout(arrays["x_test"], "x_test", p)
    if standardize:
        x_train, x_test = standardise(x_train, x_test)
    y_train, y_test, names = _encode_labels(arrays["y_train"].ravel(), arrays["y_test"].ravel(), p, num_classes)
    return RawSplits(x_train, y_train, x_test, y_test, names, f"npz file {p.name}")


def _read_csv(p: Path, label_column: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with p.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise UserError(f"{p}: needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], rows[1:]
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
    return x, np.array(labels), features


def _maybe_int(labels: np.ndarray) -> np.ndarray:
    try:
        return labels.astype(np.int64)
    except ValueError:
        return labels


@register_dataset("csv", "your table: a CSV of numeric feature columns and a label column (set data.path)")
def load_csv(path: str | None = None, label_column: str = "label", test_path: str | None = None,
             test_fraction: float = 0.2, standardize: bool = True) -> RawSplits:
    p = _require_path("csv", path, "a CSV file with a header row")
    x, y, features = _read_csv(p, label_column)
    if test_path:
        x_te, y_te, f_te = _read_csv(_require_path("csv", test_path, "the test CSV"), label_column)
        if f_te != features:
            raise UserError(f"{test_path}: its feature columns differ from {p}'s")
        x_tr, y_tr = x, y
    else:
        x_tr, x_te, y_tr, y_te = fixed_split(x, y, test_fraction, str(p))
    if standardize:
        x_tr, x_te = standardise(x_tr, x_te)
    y_tr, y_te, names = _encode_labels(_maybe_int(y_tr), _maybe_int(y_te), p)
    return RawSplits(x_tr, y_tr, x_te, y_te, names, f"CSV {p.name}, features: {', '.join(features)}")


def _read_image_classes(root: Path, size: tuple[int, int] | None, mode: str) -> tuple[list[np.ndarray], list[str], list[str]]:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise UserError(f"{root}: no class subfolders; put each class's images in {root}/<class_name>/")
    images, labels = [], []
    for cls in classes:
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert(mode)
                    if size is not None:
                        im = im.resize((size[1], size[0]))
                    images.append(np.asarray(im))
            except (UnidentifiedImageError, OSError) as exc:
                raise UserError(f"{f}: not a readable image ({exc}); remove or replace it") from None
            labels.append(cls)
    return images, labels, classes


def _stack_images(images: list[np.ndarray], root: Path) -> np.ndarray:
    if not images:
        raise UserError(f"{root}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))}); add some per class folder")
    first = images[0].shape
    for i, im in enumerate(images):
        if im.shape != first:
            raise UserError(f"{root}: image #{i} is {im.shape[:2]} but the first is {first[:2]}; "
                            "resize them or set data.options.size: [H, W]")
    x = np.stack(images).astype(np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


@register_dataset("image_folder", "your images: data.path/<class>/*.png, or data.path/{train,test}/<class>/")
def load_image_folder(path: str | None = None, size: list[int] | None = None, grayscale: bool = True,
                      test_fraction: float = 0.2) -> RawSplits:
    root = _require_path("image_folder", path, "a folder with one subfolder of images per class")
    sz = tuple(size) if size else None
    mode = "L" if grayscale else "RGB"
    if (root / "train").is_dir() and (root / "test").is_dir():
        im_tr, lab_tr, cls_tr = _read_image_classes(root / "train", sz, mode)
        im_te, lab_te, cls_te = _read_image_classes(root / "test", sz, mode)
        if cls_tr != cls_te:
            raise UserError(f"{root}: train classes {cls_tr} differ from test classes {cls_te}")
        x_tr, x_te = _stack_images(im_tr, root / "train"), _stack_images(im_te, root / "test")
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise UserError(f"{root}: train images are {x_tr.shape[2:]} but test images {x_te.shape[2:]}; "
                            "set data.options.size: [H, W]")
        y_tr, y_te, classes = np.array(lab_tr), np.array(lab_te), cls_tr
    else:
        images, labels, classes = _read_image_classes(root, sz, mode)
        x = _stack_images(images, root)
        x_tr, x_te, y_tr, y_te = fixed_split(x, np.array(labels), test_fraction, str(root))
    index = {c: i for i, c in enumerate(classes)}
    y_tr = np.array([index[c] for c in y_tr], dtype=np.int64)
    y_te = np.array([index[c] for c in y_te], dtype=np.int64)
    x_tr, x_te = standardise(x_tr, x_te)
    return RawSplits(x_tr, y_tr, x_te, y_te, classes, f"image folder {root.name}")

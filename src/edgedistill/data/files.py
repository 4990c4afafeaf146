"""The user's own data: an .npz of arrays, a CSV of features plus a label column, or a folder of images per class."""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from edgedistill.data import RawSplits, encode_labels, fixed_split, register_dataset
from edgedistill.errors import UserError, first_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _require_path(name: str, path: str | None, kind: str, folder: bool = False) -> Path:
    if not path:
        raise UserError(f"data.path: dataset {name!r} reads {kind}; set data.path to it")
    p = Path(path)
    if not p.exists():
        raise UserError(f"data.path: {path!r} does not exist; point it at {kind}")
    if folder and not p.is_dir():
        raise UserError(f"data.path: {path!r} is a file, but dataset {name!r} reads {kind}")
    if not folder and p.is_dir():
        raise UserError(f"data.path: {path!r} is a folder, but dataset {name!r} reads {kind}")
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
    for key in ("x_train", "x_test"):
        if arrays[key].dtype.kind == "f":
            check_finite(arrays[key], p, key)
    x_train = _as_model_layout(arrays["x_train"], "x_train", p)
    x_test = _as_model_layout(arrays["x_test"], "x_test", p)
    if standardize:
        x_train, x_test = standardise(x_train, x_test)
    y_train, hot_train = _class_indices(arrays["y_train"], "y_train", p)
    y_test, hot_test = _class_indices(arrays["y_test"], "y_test", p)
    if hot_train != hot_test:
        raise UserError(f"{p}: y_train and y_test must both be one-hot of the same width, or both class labels")
    y_train, y_test, names = encode_labels(y_train, y_test, str(p), num_classes=num_classes or hot_train)
    return RawSplits(x_train, y_train, x_test, y_test, names, f"npz file {p.name}")


def _read_csv(p: Path, label_column: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
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
    check_finite(x, p, "features", features)
    return x, np.array(labels), features


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
    y_tr, y_te, names = encode_labels(y_tr, y_te, str(p))
    return RawSplits(x_tr, y_tr, x_te, y_te, names, f"CSV {p.name}, features: {', '.join(features)}")


def _image_files(folder: Path) -> list[Path]:
    """Image files by suffix; hidden ones (macOS's ._name, editors' backups) are never data."""
    return sorted(f for f in folder.iterdir()
                  if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(f: Path, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            im = im.convert(mode)
            if size is not None:
                im = im.resize((size[1], size[0]))
            return np.asarray(im)
    except Image.DecompressionBombError as exc:
        raise UserError(f"{f}: too large to decode safely ({first_line(exc)}); shrink it or remove it") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"{f}: not a readable image ({first_line(exc)}); remove or replace it") from None


def _read_image_classes(root: Path, size: tuple[int, int] | None, mode: str,
                        empty_ok: bool = False) -> tuple[list[np.ndarray], list[str], list[str]]:
    """One class per visible subfolder (hidden ones such as .ipynb_checkpoints are skipped); a training class
    folder with no images is refused, since it would be a class nothing teaches."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class subfolders; put each class's images in {root}/<class_name>/")
    images, labels = [], []
    for cls in classes:
        files = _image_files(root / cls)
        if not files and not empty_ok:
            raise UserError(f"{root / cls}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                            "add some or remove the folder")
        images += [_read_image(f, size, mode) for f in files]
        labels += [cls] * len(files)
    return images, labels, classes


def _image_size(size: list[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in size)):
        raise UserError(f"data.options.size: {size!r} must be [height, width] in pixels, each 1..4096")
    return tuple(size)


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
    root = _require_path("image_folder", path, "a folder with one subfolder of images per class", folder=True)
    sz = _image_size(size)
    mode = "L" if grayscale else "RGB"
    if (root / "train").is_dir() and (root / "test").is_dir():
        im_tr, lab_tr, cls_tr = _read_image_classes(root / "train", sz, mode)
        im_te, lab_te, cls_te = _read_image_classes(root / "test", sz, mode, empty_ok=True)
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

"""Unlabelled transfer data: training rows without labels, which only a distilled model trains on (the teacher's
outputs are its targets there), as Hinton's "transfer set".

Two sources, usable together. `data.labeled_fraction` (or `labeled_count`) keeps the labels of a stratified share of
the training split, chosen by the split seed, and makes the rest the pool. `data.unlabeled` reads more rows from a
file or folder, through the dataset's own preprocessing (its `InputForm`): the same layout, standardisation
statistics of the labelled data, tokenizer or pixel size, so a pool that differs in shape is refused before anything
trains.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgedistill.data.forms import InputForm
from edgedistill.errors import UserError, first_line

TEXT_SUFFIXES = {".txt"}


def labeled_split(y: np.ndarray, fraction: float | None, count: int | None, seed: int, class_names: list[str],
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(labelled rows, pool rows) of a training split: a stratified share keeps its labels, drawn with the split
    seed so every seed and the scratch control share it. A share too small to label every class is refused."""
    field = "data.labeled_fraction" if fraction is not None else "data.labeled_count"
    asked = fraction if fraction is not None else count
    keep = int(round(fraction * len(y))) if fraction is not None else count
    if keep >= len(y):
        raise UserError(f"{field}: {asked} keeps all {len(y)} training rows (after validation); lower it so some "
                        "rows are left unlabelled, or remove it")
    classes = np.unique(y)
    if keep < len(classes):
        counts = np.bincount(y)[classes]
        raise UserError(too_few_labels(field, asked, keep, len(y), class_names[classes[np.argmin(counts)]],
                                       len(classes)))
    kept = stratified_rows(y, keep, seed)
    return np.sort(kept), np.setdiff1d(np.arange(len(y)), kept)


def too_few_labels(field: str, asked: float | int, keep: int, rows: int, rarest: str, n_classes: int) -> str:
    """Why a share leaves a class unlabelled, with a count that would do, or, where every row is its class's only
    one (no count would), which class is too rare."""
    if n_classes >= rows:
        return (f"{field}: {asked} leaves a class with no labelled row, and each of the {rows} training rows (after "
                f"validation) is the only row of its class (class {rarest!r} among them), so none can be set aside; "
                f"add training rows, or remove {field}")
    return (f"{field}: {asked} keeps {keep} labelled training rows, fewer than the {n_classes} classes, so "
            f"{n_classes - keep} classes (the rarest is {rarest!r}) would get none and nothing would teach them; "
            f"keep labels for at least {n_classes} of the {rows} training rows")


def stratified_rows(y: np.ndarray, keep: int, seed: int) -> np.ndarray:
    """`keep` rows in each class's share and at least one of every class, drawn by `seed` alone: scikit-learn's
    stratified draw (earlier runs' rows) where it labels every class, else class_quotas' when a rare class defeats
    it."""
    from sklearn.model_selection import train_test_split

    try:
        kept, _ = train_test_split(np.arange(len(y)), train_size=keep, random_state=seed, stratify=y)
        if len(np.unique(y[kept])) == len(np.unique(y)):
            return kept
    except ValueError:  # a class of one row, or fewer pool rows than classes
        pass
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False)
                           for c, n in zip(classes, class_quotas(counts, keep))])


def class_quotas(counts: np.ndarray, keep: int) -> np.ndarray:
    """Rows to keep per class, summing to `keep`: its share, one at least and never more than it has, rounded by
    largest remainder. Needs len(counts) <= keep < counts.sum()."""
    share = keep * counts / counts.sum()
    quota = np.clip(np.floor(share), 1, counts).astype(np.int64)
    while quota.sum() != keep:
        short = quota.sum() < keep
        room = quota < counts if short else quota > 1
        gap = np.where(room, share - quota, -np.inf if short else np.inf)
        quota[np.argmax(gap) if short else np.argmin(gap)] += 1 if short else -1
    return quota


def pool_kind(path: Path) -> str:
    if path.is_dir():
        return "images"
    suffix = path.suffix.lower()
    return {".npz": "arrays", ".csv": "table"}.get(suffix, "text" if suffix in TEXT_SUFFIXES else suffix)


ACCEPTS = {"arrays": "an .npz holding an array x", "table": "a CSV with the feature columns and no label column",
           "images": "a folder of images (no class folders)", "text": "a .txt file of one text per line"}


def read_unlabeled(path: str, form: InputForm | None, dataset: str, input_shape: tuple[int, ...],
                   labelled: np.ndarray | None = None):
    """The pool's rows as the model reads them, refused in one line when its shape differs from the labelled data's,
    or (for arrays and tables) its values sit on another scale than the labelled rows'."""
    if not path:  # Path("") is the current folder, which would be read as a pool of images
        raise UserError("data.unlabeled: the path is empty; point it at the unlabelled samples, or remove the "
                        "setting")
    p = Path(path)
    if not p.exists():
        raise UserError(f"data.unlabeled: {path!r} does not exist; point it at the unlabelled samples")
    if form is None:
        raise UserError(f"data.unlabeled: dataset {dataset!r} cannot read an unlabelled pool; use "
                        "data.labeled_fraction to hold out some of its own training rows instead")
    kind = pool_kind(p)
    readers = {"arrays": form.arrays, "table": form.columns and form.arrays, "images": form.images,
               "text": form.texts}
    if not readers.get(kind):
        accepted = [ACCEPTS[k] for k, r in readers.items() if r]
        raise UserError(f"data.unlabeled: {path!r} is {ACCEPTS.get(kind, f'a {kind} file')}, but dataset "
                        f"{dataset!r} reads {form.kind}; give {' or '.join(accepted)}")
    if kind in ("arrays", "table"):
        raw = npz_inputs(p) if kind == "arrays" else csv_features(p, form.columns)
        try:
            x = form.arrays(raw)
        except ValueError:  # the form cannot lay the inputs out, or broadcast the labelled data's statistics
            raise UserError(f"data.unlabeled: {path!r} gives inputs of shape {tuple(raw.shape[1:])} (x is "
                            f"{raw.shape}), but the labelled data's are {tuple(input_shape)}; give samples of the same "
                            "shape (channels, length, size)") from None
    elif kind == "images":
        x = form.images(p, top_level_images(p))
    else:
        x = form.texts(text_lines(p))
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise UserError(f"data.unlabeled: {path!r} gives inputs of shape {tuple(x.shape[1:])}, but the labelled "
                        f"data's are {tuple(input_shape)}; give samples of the same shape (channels, length, size)")
    if len(x) == 0:
        raise UserError(f"data.unlabeled: {path!r} holds no samples")
    if kind in ("arrays", "table") and isinstance(labelled, np.ndarray) and len(labelled):
        check_same_scale(path, x, labelled)
    return x


SCALE_LIMIT = 10.0  # a pool this many times off the labelled rows' spread is in other units, not another domain
SCALE_VALUES = 2 ** 22  # values of each side read (32 MiB as float64): 4,096 rows of 1,024, 151 images of 96x96x3


def check_same_scale(path: str, pool: np.ndarray, labelled: np.ndarray) -> None:
    """Refuse a pool whose prepared values are on another scale than the labelled rows' (8-bit integers beside
    floats in 0..255, grams beside kilograms), since it would train silently on inputs unlike any labelled one.
    Per channel (per feature for tables), in units of the labelled rows' spread; the median over channels decides."""
    rows = max(1, SCALE_VALUES // max(1, int(np.prod(labelled.shape[1:]))))
    ref = labelled[:rows].astype(np.float64)
    axes = (0,) if ref.ndim == 2 else (0,) + tuple(range(2, ref.ndim))
    mean, std = ref.mean(axis=axes, keepdims=True), ref.std(axis=axes, keepdims=True)
    live = (std > 1e-6 * (np.abs(mean) + 1.0)).reshape(-1)  # a constant labelled channel has no scale to compare
    if not live.any():
        return
    z = (pool[:rows].astype(np.float64) - mean) / np.where(std > 0, std, 1.0)
    distance = float(np.median(np.sqrt((z ** 2).mean(axis=axes)).reshape(-1)[live]))
    values_per_channel = z.size // z.shape[1]  # a spread from a handful of values says nothing
    spread = float(np.median(z.std(axis=axes).reshape(-1)[live])) if values_per_channel >= 8 else 1.0
    if distance > SCALE_LIMIT or spread < 1 / SCALE_LIMIT:
        found = (f"lie {distance:.3g} labelled standard deviations from the labelled rows' mean"
                 if distance > SCALE_LIMIT else f"spread {spread:.3g}x as wide as the labelled rows'")
        raise UserError(f"data.unlabeled: {path!r}'s values, prepared as the labelled rows were, {found} (median over "
                        "channels): another scale or units. Give the pool in the labelled data's units and number "
                        "type (8-bit uint8 pixels are divided by 255, floats are read as they are)")


def npz_inputs(p: Path) -> np.ndarray:
    """The array x of an .npz, refused before it is read further when it holds no samples or NaN or inf; an
    archive without x, or with labels y or any other array beside it, is refused rather than read in part."""
    from edgedistill.data.files import check_finite

    try:
        with np.load(p, allow_pickle=False) as npz:
            names = list(npz.files)
            if "x" not in names:
                held = f"holds arrays {', '.join(names)} but no x" if names else "holds no arrays"
                raise UserError(f"data.unlabeled: {p} {held}; save the unlabelled inputs as x "
                                "(numpy.savez(path, x=inputs))")
            if "y" in names:
                raise UserError(f"data.unlabeled: {p} holds labels y beside x, but a pool has no labels; drop y, or "
                                "give those rows as labelled data (data.path)")
            if len(names) > 1:
                raise UserError(f"data.unlabeled: {p} holds {', '.join(n for n in names if n != 'x')} beside x, "
                                "which a pool would not read; save x alone (numpy.savez(path, x=inputs))")
            x = npz["x"]
    except UserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"data.unlabeled: {p} is not a readable .npz file ({first_line(exc)}); save it with "
                        "numpy.savez") from None
    if x.ndim == 0:
        raise UserError(f"data.unlabeled: {p}: array 'x' is a single value, not an array of samples; save the "
                        "unlabelled inputs as x with one row per sample")
    if len(x) == 0:
        raise UserError(f"data.unlabeled: {p} holds no samples (array 'x' has shape {x.shape}); save the "
                        "unlabelled inputs as x with one row per sample")
    if x.dtype.kind not in "fiub":
        raise UserError(f"data.unlabeled: {p}: array 'x' holds {x.dtype} values; give numbers")
    if x.dtype.kind == "f":
        check_finite(x, p, "x")
    return x


def csv_features(p: Path, columns: list[str]) -> np.ndarray:
    """The feature columns of a pool CSV, in the labelled table's order; a label column, any other or a repeated
    one is refused."""
    from edgedistill.data.files import check_finite, read_csv_rows

    header, body = read_csv_rows(p)
    twice = next((c for i, c in enumerate(header) if c in header[:i]), None)
    if twice is not None:
        raise UserError(f"data.unlabeled: {p} has column {twice!r} twice, and only one could be read; give each "
                        "feature column once")
    missing = [c for c in columns if c not in header]
    extra = [c for c in header if c not in columns]
    if missing or extra:
        what = f"lacks column {missing[0]!r}" if missing else f"has column {extra[0]!r}, which is not a feature"
        raise UserError(f"data.unlabeled: {p} {what}; an unlabelled pool holds exactly the feature columns "
                        f"{', '.join(columns)} (no label column)")
    at = [header.index(c) for c in columns]
    x = np.empty((len(body), len(columns)), dtype=np.float32)
    for r, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise UserError(f"{p}: line {r} has {len(row)} fields, the header has {len(header)}")
        for c, i in enumerate(at):
            try:
                x[r - 2, c] = float(row[i])
            except ValueError:
                raise UserError(f"{p}: line {r}, column {columns[c]!r}: {row[i]!r} is not a number") from None
    check_finite(x, p, "features", columns)
    return x


def top_level_images(folder: Path) -> list[Path]:
    """The images directly in a pool folder; images in a subfolder beside them are refused by name, since a pool
    reads the top level alone and would drop them without a word."""
    from edgedistill.data.image_folder import IMAGE_SUFFIXES, image_files

    files = image_files(folder)
    if not files:
        raise UserError(f"data.unlabeled: {folder} holds no images at its top level; put the unlabelled images "
                        "directly in it (no class folders)")
    for sub in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
        if any(f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
               and not any(part.startswith(".") for part in f.relative_to(sub).parts) for f in sub.rglob("*")):
            raise UserError(f"data.unlabeled: {folder} holds images in its subfolder {sub.name!r} as well as at its "
                            "top level, and a pool reads the top level alone; move them up beside the others, or "
                            "move the subfolder out")
    return files


def text_lines(p: Path) -> list[str]:
    try:
        lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise UserError(f"data.unlabeled: {p} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                        f"{exc.start}); save it as UTF-8") from None
    lines = [line for line in lines if line]
    if not lines:
        raise UserError(f"data.unlabeled: {p} holds no text; write one text per line")
    return lines

"""Built-in sets: Fashion-MNIST (Debian's IDX files), MNIST-1D (generated offline), scikit-learn's bundled sets."""
from __future__ import annotations

import contextlib
import functools
import gzip
import os
import random
import struct
from pathlib import Path
from typing import Iterator

import numpy as np

from edgedistill.data import RawSplits, fixed_split, register_dataset
from edgedistill.data.cache import cached_arrays
from edgedistill.data.forms import InputForm, image_form
from edgedistill.errors import UserError

FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
# Mean and std of the 60k Fashion-MNIST training images, scaled to [0, 1].
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


def read_idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (the MNIST container format), refusing truncated or corrupt files by name."""
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: not a readable gzip IDX file ({exc}); re-install or re-download it") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path}: not an unsigned-byte IDX file (bad magic number); re-install or re-download it")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX header; re-install or re-download it")
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise UserError(
            f"{path}: holds {len(data) - header} bytes of data but its header promises {expected}; "
            "the file is truncated or corrupt, re-install or re-download it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def find_fashion_dir(path: str | None) -> Path:
    """The config's path alone when set; otherwise $EDGEDISTILL_DATA (or its fashion-mnist/), then Debian's path."""
    candidates: list[Path] = []
    env = os.environ.get("EDGEDISTILL_DATA")
    if path:
        candidates.append(Path(path))
    else:
        if env:
            candidates += [Path(env), Path(env) / "fashion-mnist"]
        candidates.append(Path(DEBIAN_FASHION_DIR))
    for folder in candidates:
        if all((folder / f).is_file() for f in FASHION_FILES.values()):
            return folder
    tried = ", ".join(str(c) for c in candidates)
    raise UserError(
        f"dataset 'fashion_mnist': the four IDX .gz files were not found (looked in {tried}); "
        "install them with `apt-get install dataset-fashion-mnist`, or set data.path or EDGEDISTILL_DATA "
        "to a folder holding train-images-idx3-ubyte.gz and the other three"
    )


def _standardise_images(x: np.ndarray) -> np.ndarray:
    return ((x.astype(np.float32) / 255.0 - FASHION_MEAN) / FASHION_STD)[:, None, :, :]


def sequence_form() -> InputForm:
    """An npz of raw sequences, (N, L) or (N, C, L), as the loader lays out its own."""
    return InputForm("arrays", arrays=lambda x: (x[:, None, :] if x.ndim == 2 else x).astype(np.float32))


@register_dataset("fashion_mnist", "Fashion-MNIST, 60k/10k 28x28 grey clothing images, 10 classes (Debian IDX files)")
def load_fashion_mnist(path: str | None = None) -> RawSplits:
    folder = find_fashion_dir(path)
    arrays = {key: read_idx(folder / name) for key, name in FASHION_FILES.items()}
    for split in ("train", "test"):
        xs, ys = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if xs.ndim != 3 or xs.shape[1:] != (28, 28):
            raise UserError(f"{folder / FASHION_FILES['x_' + split]}: expected 28x28 images, got shape {xs.shape[1:]}")
        if len(xs) != len(ys):
            raise UserError(f"{folder}: {split} has {len(xs)} images but {len(ys)} labels; re-install the files")
    return RawSplits(
        _standardise_images(arrays["x_train"]), arrays["y_train"].astype(np.int64),
        _standardise_images(arrays["x_test"]), arrays["y_test"].astype(np.int64),
        FASHION_CLASSES, "Fashion-MNIST (zalandoresearch), official 60k/10k split",
        pixel_stats=([FASHION_MEAN], [FASHION_STD]),
        form=image_form(lambda x: (x - FASHION_MEAN) / FASHION_STD, 1),
    )


MNIST1D_ARRAYS = ("x", "y", "x_test", "y_test")


@functools.lru_cache(maxsize=4)
def _generate_mnist1d(seed: int | None) -> dict[str, np.ndarray]:
    """The generator takes seconds in pure Python, in every process, so its arrays are kept in edgedistill's cache
    folder, keyed by the versions that make them and the seed (the generator's other settings are its version's)."""
    from importlib.metadata import PackageNotFoundError, version

    import scipy

    def make() -> dict[str, np.ndarray]:  # make_dataset never touches the network; get_dataset tries a download
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        if seed is not None:
            args.seed = seed
        with kept_random_state():  # the generator reseeds the process's global generators
            data = make_dataset(args)
        return {key: np.asarray(data[key]) for key in MNIST1D_ARRAYS}

    try:
        recipe = {"mnist1d": version("mnist1d"), "numpy": np.__version__, "scipy": scipy.__version__, "seed": seed}
    except PackageNotFoundError:  # a copy without package metadata: no version to key on
        return make()
    return cached_arrays("mnist1d", recipe, MNIST1D_ARRAYS, make)


@contextlib.contextmanager
def kept_random_state() -> Iterator[None]:
    """Python's and NumPy's global generators as they were, whatever runs inside: they belong to the user."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@register_dataset("mnist1d", "MNIST-1D, 4000/1000 sequences of length 40, 10 classes (generated offline)")
def load_mnist1d(path: str | None = None, seed: int | None = None) -> RawSplits:
    data = _generate_mnist1d(seed)
    return RawSplits(
        data["x"].astype(np.float32)[:, None, :], data["y"].astype(np.int64),
        data["x_test"].astype(np.float32)[:, None, :], data["y_test"].astype(np.int64),
        [str(i) for i in range(10)], "MNIST-1D (greydanus), standard 4000/1000 split", form=sequence_form(),
    )


def _fixed_split(x: np.ndarray, y: np.ndarray, name: str):
    """scikit-learn's sets have no official split: hold out 20%, fixed once, independent of the experiment's seed."""
    return fixed_split(x, y, 0.2, f"dataset {name!r}")


@register_dataset("digits", "scikit-learn digits, 8x8 grey images, 10 classes (fixed 80/20 split)")
def load_digits(path: str | None = None) -> RawSplits:
    """Pixels are scikit-learn's 17 grey levels 0..16 divided by 16, so a pool of wider integers (int64, as
    scikit-learn gives them) is read as those levels; uint8 and a folder of image files as 8-bit pixels."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    x_tr, x_te, y_tr, y_te = _fixed_split(x, bunch.target.astype(np.int64), "digits")
    return RawSplits(x_tr, y_tr, x_te, y_te, [str(i) for i in range(10)], "scikit-learn digits, 80/20 split (seed 0)",
                     form=image_form(lambda x: x, 1, levels=16))


@register_dataset("breast_cancer", "scikit-learn breast cancer (Wisconsin), 30 features, 2 classes (fixed 80/20 split)")
def load_breast_cancer(path: str | None = None) -> RawSplits:
    from sklearn.datasets import load_breast_cancer as sk_bc

    bunch = sk_bc()
    x_tr, x_te, y_tr, y_te = _fixed_split(bunch.data.astype(np.float32), bunch.target.astype(np.int64),
                                          "breast_cancer")
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-8  # fitted on the training split only
    return RawSplits((x_tr - mean) / std, y_tr, (x_te - mean) / std, y_te, list(bunch.target_names),
                     "scikit-learn breast cancer, 80/20 split (seed 0), standardised on train",
                     form=InputForm("table", arrays=lambda x: ((x - mean) / std).astype(np.float32),
                                    columns=[str(c) for c in bunch.feature_names]))

import gzip
import io
import os
import struct
import time

import numpy as np
import pytest
from PIL import Image

from edgedistill.data import list_datasets, load_dataset
from edgedistill.data.builtin import FASHION_FILES, read_idx
from edgedistill.errors import UserError
from conftest import needs_fashion


def write_idx(path, array: np.ndarray, truncate: int = 0) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(payload[:len(payload) - truncate] if truncate else payload)


def fake_fashion(folder, n_train=60, n_test=20, truncate_file=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28)), "y_train": np.arange(n_train) % 10,
              "x_test": rng.integers(0, 256, (n_test, 28, 28)), "y_test": np.arange(n_test) % 10}
    for key, name in FASHION_FILES.items():
        write_idx(folder / name, arrays[key], truncate=7 if key == truncate_file else 0)
    return arrays


def test_registry_lists_builtin_and_file_sources():
    assert {"fashion_mnist", "mnist1d", "digits", "breast_cancer", "npz", "csv", "image_folder"} <= set(list_datasets())


def test_mnist1d_standard_split_with_validation_from_train():
    d = load_dataset("mnist1d", val_fraction=0.1)
    assert len(d.y_train) + len(d.y_val) == 4000 and len(d.y_test) == 1000
    assert len(d.y_val) == 400 and d.input_shape == (1, 40) and d.num_classes == 10


def test_validation_never_overlaps_test_and_depends_on_seed():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=1)
    assert np.array_equal(a.x_test, b.x_test)  # the test split is fixed
    assert not np.array_equal(a.x_val, b.x_val)
    test_rows = {r.tobytes() for r in a.x_test}
    assert not any(r.tobytes() in test_rows for r in a.x_val)


def test_breast_cancer_standardised_on_train_only():
    d = load_dataset("breast_cancer", val_fraction=0.2)
    full_train = np.concatenate([d.x_train, d.x_val])
    assert np.allclose(full_train.mean(axis=0), 0, atol=1e-4)
    assert not np.allclose(d.x_test.mean(axis=0), 0, atol=1e-3)
    assert d.class_names == ["malignant", "benign"]


def test_fashion_reader_on_hand_written_idx(tmp_path):
    arrays = fake_fashion(tmp_path)
    d = load_dataset("fashion_mnist", path=str(tmp_path), val_fraction=0.1)
    assert d.input_shape == (1, 28, 28)
    assert len(d.y_train) + len(d.y_val) == 60 and len(d.y_test) == 20
    assert np.array_equal(np.sort(d.y_test), np.sort(arrays["y_test"]))


def test_fashion_found_through_environment(tmp_path, monkeypatch):
    fake_fashion(tmp_path / "fashion-mnist")
    monkeypatch.setenv("EDGEDISTILL_DATA", str(tmp_path))
    assert len(load_dataset("fashion_mnist").y_test) == 20


def test_fashion_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", path=str(tmp_path))


def test_truncated_idx_is_named(tmp_path):
    fake_fashion(tmp_path, truncate_file="x_test")
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz.*truncated"):
        load_dataset("fashion_mnist", path=str(tmp_path))


def test_corrupt_idx_is_named(tmp_path):
    bad = tmp_path / "x.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="x.gz: not a readable gzip IDX"):
        read_idx(bad)


@needs_fashion
def test_real_fashion_mnist():
    d = load_dataset("fashion_mnist", val_fraction=0.1)
    assert len(d.y_train) == 54000 and len(d.y_val) == 6000 and len(d.y_test) == 10000
    assert abs(float(d.x_train.mean())) < 0.05  # standardised with the training mean/std
    assert np.bincount(d.y_test).tolist() == [1000] * 10


def test_limit_train_keeps_classes_balanced():
    d = load_dataset("mnist1d", limit_train=200, limit_test=100, val_fraction=0.1)
    assert len(d.y_train) + len(d.y_val) == 200 and len(d.y_test) == 100
    assert np.bincount(d.y_test).min() >= 8


def test_npz_arrays_and_uint8_images(tmp_path):
    rng = np.random.default_rng(0)
    f = tmp_path / "d.npz"
    np.savez(f, x_train=rng.integers(0, 256, (40, 12, 12), dtype=np.uint8), y_train=np.arange(40) % 4,
             x_test=rng.integers(0, 256, (12, 12, 12), dtype=np.uint8), y_test=np.arange(12) % 4)
    d = load_dataset("npz", path=str(f))
    assert d.input_shape == (1, 12, 12) and d.num_classes == 4


def test_npz_missing_array_is_named(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, x_train=np.zeros((4, 3)), y_train=np.zeros(4))
    with pytest.raises(UserError, match="missing array.*x_test"):
        load_dataset("npz", path=str(f))


def test_npz_label_out_of_range(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, x_train=np.zeros((6, 3)), y_train=np.array([0, 1, 0, 1, 0, 1]),
             x_test=np.zeros((2, 3)), y_test=np.array([2, 1]))
    with pytest.raises(UserError, match=r"class indices 0..1 \(options.num_classes\), found 0..2"):
        load_dataset("npz", path=str(f), options={"num_classes": 2})


def test_one_based_integer_labels_make_no_phantom_class(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("\n".join(["a,label"] + [f"{i},{1 + i % 2}" for i in range(40)] + ["0,10", "1,10", "2,10",
                                                                                   "3,10", "4,10"]))
    d = load_dataset("csv", path=str(f))
    assert d.class_names == ["1", "2", "10"]


def test_csv_with_string_labels(tmp_path):
    f = tmp_path / "t.csv"
    rows = ["a,b,label"] + [f"{i},{i * 2},{'yes' if i % 2 else 'no'}" for i in range(50)]
    f.write_text("\n".join(rows))
    d = load_dataset("csv", path=str(f))
    assert d.class_names == ["no", "yes"] and d.input_shape == (2,)
    assert len(d.y_test) == 10


def test_csv_bad_cell_names_line_and_column(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,b,label\n1,2,0\n3,x,1\n")
    with pytest.raises(UserError, match=r"line 3, column 'b'"):
        load_dataset("csv", path=str(f))


def test_csv_missing_label_column(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,b,y\n1,2,0\n3,4,1\n")
    with pytest.raises(UserError, match="no label column 'label'"):
        load_dataset("csv", path=str(f))


def _write_images(root, classes=("cat", "dog"), n=6, size=(10, 10)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(root / c / f"{i}.png")


def test_image_folder(tmp_path):
    _write_images(tmp_path)
    d = load_dataset("image_folder", path=str(tmp_path), val_fraction=0.2)
    assert d.class_names == ["cat", "dog"] and d.input_shape == (1, 10, 10)


def test_image_folder_wrong_size_is_refused(tmp_path):
    _write_images(tmp_path)
    Image.fromarray(np.zeros((12, 10), dtype=np.uint8)).save(tmp_path / "cat" / "odd.png")
    with pytest.raises(UserError, match="set data.options.size"):
        load_dataset("image_folder", path=str(tmp_path))
    d = load_dataset("image_folder", path=str(tmp_path), options={"size": [8, 8]})
    assert d.input_shape == (1, 8, 8)


def test_single_sample_class_and_empty_folder_are_one_line_errors(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,label\n" + "".join(f"{i},0\n" for i in range(9)) + "9,1\n")
    d = load_dataset("csv", path=str(f), options={"test_fraction": 0.2})  # class 1 has one sample: no stratifying
    assert len(d.y_test) == 2
    with pytest.raises(UserError, match="test labels \\['1'\\] never occur in the training split"):
        load_dataset("csv", path=str(f), options={"test_fraction": 0.9})  # class 1's one sample lands in test
    with pytest.raises(UserError, match="test_fraction must lie between 0 and 1"):
        load_dataset("csv", path=str(f), options={"test_fraction": 1.5})
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    with pytest.raises(UserError, match="cat: class folder holds no images"):
        load_dataset("image_folder", path=str(tmp_path / "imgs"))


def test_unknown_dataset_lists_choices():
    with pytest.raises(UserError, match="unknown dataset 'cifar'.*mnist1d"):
        load_dataset("cifar")


def test_cached_arrays_are_made_once_remade_when_unreadable_and_never_needed(tmp_path, monkeypatch):
    """The cache folder only saves time: a later process reads the arrays back, a damaged or foreign file is made
    again and repaired, and a cache that cannot be written costs the time, never the run."""
    from edgedistill.data.cache import cached_arrays

    made = []

    def make() -> dict[str, np.ndarray]:
        made.append(1)
        return {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "y": np.array([0, 1])}

    def saved(save, *args, **kwargs) -> bytes:
        buffer = io.BytesIO()
        save(buffer, *args, **kwargs)
        return buffer.getvalue()

    def cached(version: str = "1") -> dict[str, np.ndarray]:
        return cached_arrays("toy", {"version": version, "seed": None}, ("x", "y"), make)

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    first, again = cached(), cached()
    assert len(made) == 1 and all(np.array_equal(first[k], again[k]) and first[k].dtype == again[k].dtype
                                  for k in first)
    (stored,) = (tmp_path / "cache" / "toy").iterdir()
    cached("2")
    assert len(made) == 2  # another generator version is another file
    for damage in (lambda: stored.write_bytes(stored.read_bytes()[:40]),  # truncated
                   lambda: stored.write_bytes(saved(np.save, np.zeros(3))),  # an .npy under the name
                   lambda: stored.write_bytes(saved(np.savez, other=np.zeros(3)))):  # another set's arrays
        damage()
        before = len(made)
        assert np.array_equal(cached()["x"], first["x"]) and np.array_equal(cached()["x"], first["x"])
        assert len(made) == before + 1  # made again once, then read from the repaired file
    killed, writing = (tmp_path / "cache" / "toy" / f".{stored.name}.{tag}.tmp" for tag in ("killed", "writing"))
    for tmp in (killed, writing):
        tmp.write_bytes(b"partial")
    os.utime(killed, (time.time() - 2 * 3600,) * 2)
    cached("3")
    assert not killed.exists() and writing.exists()  # a killed writer's file is swept, one being written is not
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "file" / "cache"))
    assert np.array_equal(cached()["x"], first["x"])


def test_mnist1d_read_back_from_the_cache_equals_the_generated_set_and_leaves_global_randomness_alone(
        tmp_path, monkeypatch):
    """Generating MNIST-1D reseeds Python's and NumPy's global generators; those belong to the user, so they are
    put back, and the set read from the cache is the generated one to the bit."""
    import random

    from edgedistill.data.builtin import _generate_mnist1d

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))
    random.seed(11)
    np.random.seed(11)
    expected = (random.random(), np.random.random())
    random.seed(11)
    np.random.seed(11)
    _generate_mnist1d.cache_clear()
    made = _generate_mnist1d(None)
    assert (random.random(), np.random.random()) == expected
    _generate_mnist1d.cache_clear()
    read = _generate_mnist1d(None)
    _generate_mnist1d.cache_clear()
    assert len(list((tmp_path / "mnist1d").iterdir())) == 1 and read is not made
    for key in ("x", "y", "x_test", "y_test"):
        assert read[key].dtype == made[key].dtype and np.array_equal(read[key], made[key]), key

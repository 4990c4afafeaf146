"""The real pipeline end to end on tiny data (the families pairwise, without it, are test_families.py's)."""
import json
import math

import numpy as np
import pytest
import torch
import yaml

from edgedistill.config import AugmentConfig, TrainConfig
from edgedistill.distill.ce import CrossEntropy
from edgedistill.errors import UserError
from edgedistill.train.augment import augment_batch
from edgedistill.train.trainer import Trainer, batch_source
import edgedistill

def test_run_folder_and_metrics_schema(tmp_path, tiny):
    out = tmp_path / "run"
    result = edgedistill.run(tiny(), out_dir=out, progress=False)
    for name in ["config.yaml", "metrics.json", "report.md", "teacher.pt", "student_scratch.pt", "student_kd.pt",
                 "logs/teacher.jsonl", "logs/student_scratch.jsonl", "logs/student_kd.jsonl"]:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert metrics["schema_version"] == 4
    for role in ("teacher", "student_scratch", "student_kd"):
        m = metrics["models"][role]
        assert {"accuracy", "precision_macro", "recall_macro", "f1_macro", "per_class",
                "confusion_matrix"} <= set(m["test"])
        cm = np.array(m["test"]["confusion_matrix"])
        assert cm.shape == (10, 10) and cm.sum() == metrics["dataset"]["n_test"]
        assert np.isclose(np.trace(cm) / cm.sum(), m["test"]["accuracy"])
        assert m["size_fp32_bytes"] >= 4 * m["params"]
        assert len(m["train"]["history"]) == 1
    c = metrics["comparison"]
    acc = {r: metrics["models"][r]["test"]["accuracy"] for r in metrics["models"]}
    assert np.isclose(c["kd_gain_over_scratch"], acc["student_kd"] - acc["student_scratch"])
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["data"]["limit_train"] == 200 and resolved["distill"]["temperature"] == 4.0
    report = (out / "report.md").read_text()
    assert "student (KD)" in report and "student (scratch)" in report


def test_finished_run_is_not_overwritten(tmp_path, tiny):
    out = tmp_path / "run"
    edgedistill.run(tiny(), out_dir=out, progress=False)
    before = (out / "metrics.json").read_text()
    with pytest.raises(UserError, match="--overwrite"):
        edgedistill.run(tiny(), out_dir=out, progress=False)
    assert (out / "metrics.json").read_text() == before
    edgedistill.run(tiny(), out_dir=out, overwrite=True, progress=False)


def test_teacher_loaded_from_checkpoint_scores_the_same(tmp_path, tiny):
    first = edgedistill.run(tiny(), out_dir=tmp_path / "a", progress=False)
    cfg = tiny()
    cfg["teacher"]["checkpoint"] = str(tmp_path / "a" / "teacher.pt")
    second = edgedistill.run(cfg, out_dir=tmp_path / "b", progress=False)
    t1, t2 = first.metrics["models"]["teacher"], second.metrics["models"]["teacher"]
    assert t2["source"].startswith("loaded:") and "train" not in t2
    assert t1["test"]["accuracy"] == t2["test"]["accuracy"]


def test_checkpoint_for_another_architecture_is_refused(tmp_path, tiny):
    edgedistill.run(tiny(), out_dir=tmp_path / "a", progress=False)
    cfg = tiny(teacher_args={"width": 8})
    cfg["teacher"]["checkpoint"] = str(tmp_path / "a" / "teacher.pt")
    with pytest.raises(UserError, match="made for another architecture"):
        edgedistill.run(cfg, out_dir=tmp_path / "b", progress=False)


def test_user_teacher_by_import_path(tmp_path, tiny):
    result = edgedistill.run(tiny(teacher="user_models:tiny_linear"), out_dir=tmp_path / "r", progress=False)
    assert result.metrics["models"]["teacher"]["params"] == 40 * 10 + 10


def test_class_count_mismatch_is_refused_before_training(tmp_path, tiny):
    with pytest.raises(UserError, match="5,\\) logits.*10 classes"):
        edgedistill.run(tiny(teacher="user_models:five_class_model"), out_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "teacher.pt").exists()


def test_scratch_and_kd_students_start_from_the_same_weights(tmp_path, tiny):
    cfg = tiny()
    cfg["distill"]["alpha"] = 0.0  # KD with alpha 0 is plain CE: both students must end identical
    result = edgedistill.run(cfg, out_dir=tmp_path / "r", progress=False)
    m = result.metrics["models"]
    assert m["student_scratch"]["test"] == m["student_kd"]["test"]


def test_crop_augmentation_shifts_content_without_resizing():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0
    out = augment_batch(x, AugmentConfig(crop_padding=2, hflip=True), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.all(out.sum(dim=(1, 2, 3)) == 4)  # a 2-pixel shift of a centred block never crops it
    assert not torch.equal(out, x)
    seq = augment_batch(torch.arange(10.0).repeat(16, 1, 1), AugmentConfig(crop_padding=1), torch.Generator())
    assert seq.shape == (16, 1, 10)


def test_trainer_learns_and_keeps_best_validation_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = torch.nn.Linear(2, 2)
    ce = CrossEntropy()
    trainer = Trainer(TrainConfig(epochs=5, batch_size=32, lr=0.05), ce, batch_source(ce, AugmentConfig()),
                      torch.device("cpu"), seed=0, role="t")
    res = trainer.fit(model, x[:300], y[:300], x[300:], y[300:])
    assert res.best_val_accuracy > 0.9
    assert res.best_val_accuracy == max(r["val_accuracy"] for r in res.history)
    with torch.no_grad():  # the model left behind holds the best epoch's weights, not the last epoch's
        final = (model(torch.as_tensor(x[300:])).argmax(1).numpy() == y[300:]).mean()
    assert final == pytest.approx(res.best_val_accuracy)


def test_keep_last_leaves_the_final_epoch_even_after_a_better_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    torch.manual_seed(0)  # some import seeds torch afresh each process: fix the init so the test is one case
    model = torch.nn.Linear(2, 2)
    ce = CrossEntropy()
    trainer = Trainer(TrainConfig(epochs=4, batch_size=8, lr=0.5, schedule="constant", keep="last"), ce,
                      batch_source(ce, AugmentConfig()), torch.device("cpu"), seed=0, role="t")
    res = trainer.fit(model, x[:72], y[:72], x[72:], y[72:])
    assert max(h["val_accuracy"] for h in res.history[:-1]) >= res.history[-1]["val_accuracy"]  # keep: best could differ
    assert res.best_epoch == 4 and res.best_val_accuracy == res.history[-1]["val_accuracy"]
    with torch.no_grad():
        final = (model(torch.as_tensor(x[72:])).argmax(1).numpy() == y[72:]).mean()
    assert final == pytest.approx(res.history[-1]["val_accuracy"])


def test_channels_last_trains_the_same_model_in_nhwc_and_hands_back_plain_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 2, 8, 8)).astype(np.float32)  # one channel is both orders at once
    y = (x[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64)

    def train(channels_last: bool):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                    torch.nn.Linear(144, 2))
        seen = []
        model[0].register_forward_pre_hook(lambda m, a: seen.append(
            model.training and a[0].is_contiguous(memory_format=torch.channels_last) and a[0].stride(1) == 1))
        ce = CrossEntropy()
        cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, channels_last=channels_last, precision="fp32")
        res = Trainer(cfg, ce, batch_source(ce, AugmentConfig()), torch.device("cpu"), seed=0, role="t").fit(
            model, x[:64], y[:64], x[64:], y[64:])
        return model, res, seen

    plain, res_plain, seen_plain = train(False)
    nhwc, res_nhwc, seen_nhwc = train(True)
    assert any(seen_nhwc) and not any(seen_plain)  # the training batches reached the conv in NHWC order
    assert all(p.is_contiguous() for p in nhwc.parameters())  # export and later stages get plain tensors
    assert res_nhwc.history[-1]["train_loss"] == pytest.approx(res_plain.history[-1]["train_loss"], rel=1e-4)
    for a, b in zip(plain.state_dict().values(), nhwc.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_last_good_checkpoint(tmp_path, tiny):
    cfg = tiny(teacher="user_models:nan_after_one_epoch")
    cfg["teacher"]["train"]["epochs"] = 3  # 4 batches per epoch: epoch 1 is good, epoch 2 diverges at batch 1
    with pytest.raises(FloatingPointError, match="loss became nan in epoch 2, batch 1; the last good checkpoint"):
        edgedistill.run(cfg, out_dir=tmp_path / "r", progress=False)
    saved = torch.load(tmp_path / "r" / "teacher.pt", weights_only=True)
    assert saved["epoch"] == 1


def test_nan_batches_can_be_skipped(tmp_path, tiny):
    cfg = tiny(teacher="user_models:nan_after_one_epoch")
    cfg["teacher"]["train"].update(epochs=2, on_nonfinite="skip")
    result = edgedistill.run(cfg, out_dir=tmp_path / "r", progress=False)
    history = result.metrics["models"]["teacher"]["train"]["history"]
    assert [h["skipped_nonfinite_batches"] for h in history] == [0, 4]


@pytest.mark.parametrize("teacher,targs,dataset", [("gru", {"hidden": 16, "layers": 1}, "mnist1d"),
                                                   ("transformer", {"dim": 16, "depth": 1, "heads": 2}, "digits"),
                                                   ("resnet", {"width": 8}, "digits")])
def test_feature_methods_run_across_families(tmp_path, tiny, teacher, targs, dataset):
    """FitNets and AT on default taps: GRU -> 1-D CNN, Transformer -> CNN, CNN -> CNN, combined with DKD."""
    cfg = tiny(dataset, teacher, "convnet", targs, {"channels": [4, 8]})
    cfg["distill"] = {"method": ["dkd", "fitnets", "at"]}
    res = edgedistill.run(cfg, out_dir=tmp_path / "r", progress=False)
    row = json.loads((tmp_path / "r" / "logs" / "student_kd.jsonl").read_text().splitlines()[-1])
    assert {"train_ce", "train_tckd", "train_nckd", "train_fitnets", "train_at"} <= row.keys()
    assert all(math.isfinite(row[k]) for k in ("train_fitnets", "train_at"))
    assert "fitnets (weight 100.0)" in (tmp_path / "r" / "report.md").read_text()
    assert res.metrics["models"]["student_kd"]["distill"]["method"] == ["dkd", "fitnets", "at"]


def test_feature_methods_read_cached_taps_at_the_students_size(tmp_path, tiny):
    """With the cache on, FitNets and AT train from a bank whose teacher taps are pooled to the student's taps."""
    cfg = tiny("digits", "resnet", "convnet", {"width": 8}, {"channels": [4, 8, 8]})
    cfg["distill"] = {"method": ["kd", "fitnets", "at"], "cache": {"enabled": True, "views": 2}}
    edgedistill.run(cfg, out_dir=tmp_path / "r", progress=False)
    bank = json.loads((tmp_path / "r" / "cache" / "teacher_outputs" / "meta.json").read_text())
    # teacher stages of 8x8x8, 16x4x4 and 32x2x2 kept at the student's 4x4, 2x2 and 1x1
    assert [tuple(bank[f"feat{i}"]["shape"][2:]) for i in range(3)] == [(8, 4, 4), (16, 2, 2), (32, 1, 1)]
    row = json.loads((tmp_path / "r" / "logs" / "student_kd.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(row["train_fitnets"]) and math.isfinite(row["train_at"])


def test_seeds_train_the_teacher_once_and_report_mean_and_std(tmp_path, tiny):
    from edgedistill.cli.seeds import run_seeds, seeds_table, summarize

    res = run_seeds(tiny(), 2, out_dir=tmp_path / "s", progress=False)
    s = res.summary
    assert s["seeds"] == [0, 1]
    second = json.loads((tmp_path / "s" / "seed_1" / "metrics.json").read_text())
    assert second["models"]["teacher"]["source"].startswith("loaded:")  # trained once, by seed 0
    assert second["config"]["data"]["split_seed"] == 0  # one validation split for every seed
    accs = [json.loads((tmp_path / "s" / f"seed_{i}" / "metrics.json").read_text())["models"]["student_kd"]["test"]
            ["accuracy"] for i in (0, 1)]
    assert math.isclose(s["models"]["student_kd"]["accuracy"]["mean"], sum(accs) / 2)
    assert math.isclose(s["models"]["student_kd"]["accuracy"]["std"], abs(accs[0] - accs[1]) / math.sqrt(2))
    assert "± " in res.table and (tmp_path / "s" / "seeds.md").exists()
    fake = [{"config": {"seed": i}, "comparison": {"kd_gain_over_scratch": g},
             "models": {r: {"params": 1, "test": {"accuracy": a, "f1_macro": a}} for r, a in
                        (("teacher", 0.9), ("student_scratch", sa), ("student_kd", sa + g))}}
            for i, (sa, g) in enumerate([(0.80, 0.010), (0.81, 0.012), (0.80, 0.011)])]
    consistent = summarize(fake)
    assert consistent["gain_exceeds_noise"] and consistent["kd_gain_over_scratch"]["p_value"] < 0.01
    fake[1]["models"]["student_scratch"]["test"]["accuracy"] = 0.85  # scratch spread now exceeds the gain
    assert not summarize(fake)["gain_exceeds_noise"]
    fake[1]["comparison"]["kd_gain_over_scratch"] = -0.02  # gains of mixed sign: not significant
    assert summarize(fake)["kd_gain_over_scratch"]["p_value"] > 0.05
    assert "inside the noise" in seeds_table(summarize(fake) | {"distill": None})


def test_student_auto_returns_a_student_that_fits_the_mcu(tmp_path, tiny):
    """A tight latency budget on the microcontroller profile makes some trials infeasible: they are refused before
    training, and the chosen student, trained and deployed, fits."""
    cfg = tiny("digits", "mlp", "mlp")
    cfg["student"] = {"model": "auto", "train": cfg["student"]["train"],
                      "search": {"family": "convnet", "trials": 5, "epochs": 1, "max_steps_per_epoch": 2}}
    cfg |= {"device": "mcu", "latency_budget_ms": 3.0,  # ONNX Runtime's int8 file: the search is tested, not TFLM
            "deploy": {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "formats": ["onnxruntime-int8"]}}
    m = edgedistill.run(cfg, out_dir=tmp_path / "r", progress=False).metrics
    search = m["student_search"]
    assert 1 <= len(search["trials"]) <= 5
    chosen = next(t for t in search["trials"] if t["number"] == search["best_trial"])
    assert chosen["fits"] and m["models"]["student_kd"]["args"] == chosen["args"]
    for t in search["trials"]:
        assert ("val_accuracy" in t) == t["fits"]  # infeasible trials train nothing
    assert any(not t["fits"] for t in search["trials"]), "the budget should rule some trials out"
    dep = m["models"]["student_kd"]["deploy"]
    assert dep["fit"][dep["preferred"]]["fits"]
    assert "Student search" in (tmp_path / "r" / "report.md").read_text()
    assert (tmp_path / "r" / "student_search.json").exists()


def test_feature_method_whose_cache_would_be_too_big_trains_with_the_live_teacher(tmp_path, tiny, caplog):
    """The cache's size limit falls back to the live teacher; the feature method, already set up for the cache,
    is not set up a second time."""
    import logging

    cfg = tiny()
    cfg["distill"] = {"method": ["kd", "at"], "cache": {"enabled": True, "views": 2, "max_bytes": 1}}
    with caplog.at_level(logging.WARNING, logger="edgedistill"):
        m = edgedistill.run(cfg, out_dir=tmp_path / "r", progress=False).metrics
    assert "runs live instead" in caplog.text
    assert "train_at" in m["models"]["student_kd"]["train"]["history"][0]

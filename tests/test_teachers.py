"""ONNX and ensemble teachers: real ONNX Runtime sessions on files torch (or skl2onnx) wrote, the real pipeline."""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

import edgedistill
from conftest import run_cli, tiny_config
from edgedistill.config import AugmentConfig, validate_config
from edgedistill.data import DataSplits
from edgedistill.errors import UserError
from edgedistill.teachers.ensemble import EnsembleTeacher
from edgedistill.teachers.onnx import OnnxTeacher
from edgedistill.train.cache import cache_key

SHAPE, CLASSES = (1, 40), 10  # mnist1d's, so the same files teach the tiny CLI run


def toy_splits(n: int = 96) -> DataSplits:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, *SHAPE)).astype(np.float32)
    y = rng.integers(0, CLASSES, n)
    third = n // 3
    return DataSplits("toy", x[:third], y[:third], x[third:2 * third], y[third:2 * third], x[2 * third:],
                      y[2 * third:], [str(c) for c in range(CLASSES)])


def torch_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, CLASSES)).eval()


def export(model: nn.Module, path):
    torch.onnx.export(model.eval(), (torch.zeros(2, *SHAPE),), str(path), dynamo=True, external_data=False,
                      input_names=["input"], output_names=["out"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two torch models as ONNX files giving logits, and the first again giving probabilities."""
    root = tmp_path_factory.mktemp("onnx")
    a, b = torch_model(0), torch_model(1)
    return {"a": a, "b": b, "a_onnx": export(a, root / "a.onnx"), "b_onnx": export(b, root / "b.onnx"),
            "a_probs": export(nn.Sequential(a, nn.Softmax(dim=1)), root / "a_probs.onnx")}


def test_onnx_logits_equal_the_torch_model(files):
    data = toy_splits()
    teacher = OnnxTeacher.from_args({"path": str(files["a_onnx"])}, data, "teacher.args")
    x = torch.as_tensor(data.x_test)
    assert teacher.output == "logits"
    torch.testing.assert_close(teacher(x), files["a"](x).detach(), atol=1e-4, rtol=0)
    assert teacher.run_record()["params"] == sum(p.numel() for p in files["a"].parameters())


def test_half_precision_and_fixed_batch_onnx_teachers_read_every_row(files, tmp_path):
    """A float16 file (input and output) and one exported with a fixed batch of 1 were refused with wrong reasons
    ('takes one tensor input', 'does not accept inputs of shape'); they now teach like the float32 file."""
    import copy

    data = toy_splits()
    x = torch.as_tensor(data.x_test)  # 32 rows: the fixed batch reads them one by one
    half = copy.deepcopy(files["a"]).half()
    torch.onnx.export(half, (torch.zeros(2, *SHAPE, dtype=torch.float16),), str(tmp_path / "half.onnx"), dynamo=False,
                      input_names=["x"], output_names=["out"], dynamic_axes={"x": {0: "n"}, "out": {0: "n"}})
    torch.onnx.export(files["a"], (torch.zeros(1, *SHAPE),), str(tmp_path / "one.onnx"), dynamo=False,
                      input_names=["x"], output_names=["out"])
    expected = files["a"](x).detach()
    for name, atol in (("half", 0.05), ("one", 1e-4)):
        teacher = OnnxTeacher.from_args({"path": str(tmp_path / f"{name}.onnx")}, data, "teacher.args")
        out = teacher(x)
        assert out.dtype == torch.float32 and out.shape == expected.shape, name
        torch.testing.assert_close(out, expected, atol=atol, rtol=0)


def test_probability_output_is_detected_and_turned_into_log_probs(files):
    data = toy_splits()
    teacher = OnnxTeacher.from_args({"path": str(files["a_probs"])}, data, "teacher.args")
    x = torch.as_tensor(data.x_test)
    assert teacher.output == "probabilities"
    expected = torch.log(torch.softmax(files["a"](x), dim=1).clamp_min(1e-7)).detach()
    torch.testing.assert_close(teacher(x), expected, atol=1e-4, rtol=0)
    forced = OnnxTeacher.from_args({"path": str(files["a_probs"]), "output": "logits"}, data, "teacher.args")
    torch.testing.assert_close(forced(x), torch.softmax(files["a"](x), dim=1).detach(), atol=1e-4, rtol=0)


def test_skl2onnx_classifier_reads_its_probabilities_and_refuses_a_zipmap(tmp_path):
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    data = toy_splits(300)
    flat = data.x_train.reshape(len(data.x_train), -1)
    clf = LogisticRegression(max_iter=500).fit(flat, data.y_train)
    plain = skl2onnx.to_onnx(clf, flat[:1], options={id(clf): {"zipmap": False}})
    (tmp_path / "lr.onnx").write_bytes(plain.SerializeToString())
    teacher = OnnxTeacher.from_args({"path": str(tmp_path / "lr.onnx")}, data, "teacher.args")
    assert (teacher.output_name, teacher.output) == ("probabilities", "probabilities")
    test = data.x_test.reshape(len(data.x_test), -1)
    assert (teacher(torch.as_tensor(data.x_test)).argmax(1).numpy() == clf.predict(test)).all()
    zipped = skl2onnx.to_onnx(clf, flat[:1])
    (tmp_path / "zip.onnx").write_bytes(zipped.SerializeToString())
    with pytest.raises(UserError, match="zipmap"):
        OnnxTeacher.from_args({"path": str(tmp_path / "zip.onnx")}, data, "teacher.args")


def member_checkpoint(model: nn.Module, path) -> str:
    torch.save({"state_dict": model.state_dict()}, path)
    return str(path)


def test_ensemble_averages_probabilities_or_logits_by_hand(files, tmp_path):
    data = toy_splits()
    members = [{"model": "onnx", "args": {"path": str(files["a_onnx"])}},
               {"model": "test_teachers:toy_factory", "checkpoint": member_checkpoint(files["b"], tmp_path / "b.pt")}]
    x = torch.as_tensor(data.x_test)
    la, lb = files["a"](x).detach(), files["b"](x).detach()
    mean_p = EnsembleTeacher.from_args({"members": members}, data, 0)
    torch.testing.assert_close(mean_p(x), torch.log((la.softmax(1) + lb.softmax(1)) / 2), atol=1e-4, rtol=0)
    mean_l = EnsembleTeacher.from_args({"members": members, "combine": "logits"}, data, 0)
    torch.testing.assert_close(mean_l(x), (la + lb) / 2, atol=1e-4, rtol=0)
    record = mean_l.run_record()
    assert record["files"] == ["teacher_member0.onnx", "teacher_member1.pt"]
    assert record["params"] == 2 * sum(p.numel() for p in files["a"].parameters())


def toy_factory(input_shape, num_classes):
    """An import-path member: the same architecture as torch_model."""
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, num_classes))


def test_val_accuracy_weights_by_hand(files):
    data = toy_splits(300)
    members = [{"model": "onnx", "args": {"path": str(files[k])}} for k in ("a_onnx", "b_onnx")]
    teacher = EnsembleTeacher.from_args({"members": members, "weights": "val_accuracy"}, data, 0)
    xv = torch.as_tensor(data.x_val)
    acc = [float((files[k](xv).argmax(1).numpy() == data.y_val).mean()) for k in ("a", "b")]
    assert teacher.accuracies == pytest.approx(acc)
    assert teacher.member_weights.tolist() == pytest.approx([a / sum(acc) for a in acc])
    x = torch.as_tensor(data.x_test)
    p = sum(w / sum(acc) * files[k](x).detach().softmax(1) for w, k in zip(acc, ("a", "b")))
    torch.testing.assert_close(teacher(x), torch.log(p), atol=1e-4, rtol=0)


def test_cache_key_follows_the_onnx_files_bytes(files, tmp_path):
    data, path = toy_splits(), tmp_path / "teacher.onnx"

    def key():
        teacher = OnnxTeacher.from_args({"path": str(path)}, data, "teacher.args")
        return cache_key(teacher, data.x_train, data.y_train, AugmentConfig(), 1, 0, [], None)

    shutil.copyfile(files["a_onnx"], path)
    first = key()
    assert key() == first
    shutil.copyfile(files["b_onnx"], path)
    assert key() != first


def onnx_config(path: str, **distill) -> dict:
    cfg = tiny_config()
    cfg["teacher"] = {"model": "onnx", "args": {"path": path}}  # loaded, never trained: no teacher.train
    cfg["distill"] |= distill
    return cfg


@pytest.mark.parametrize("change,fragment", [
    (lambda c: c["teacher"]["args"].update(pth="x"), "unknown key 'teacher.args.pth'"),
    (lambda c: c["teacher"]["args"].update(output="logit"), "teacher.args.output"),
    (lambda c: c["teacher"].update(checkpoint="t.pt"), "teacher.checkpoint"),
    (lambda c: c["teacher"].update(train={"epochs": 3}), "teacher.train"),
    (lambda c: c["distill"].update(method=["kd", "at"]), "at reads the teacher's features"),
    (lambda c: c.update(compress={"prune": {"enabled": True, "target_params": 100}}), "compress.prune.enabled"),
    (lambda c: c.update(deploy={"roles": ["teacher", "student_kd"]}), "deploy.roles"),
    (lambda c: c["teacher"].update(model="ensemble", args={"members": [{"model": "mlp"}]}),
     "teacher.args.members.0.checkpoint"),
    (lambda c: c["teacher"].update(model="ensemble", args={"members": [{"model": "onnx", "args": {"path": "a",
                                                                                              "x": 1}}]}),
     "unknown key 'teacher.args.members.0.args.x'"),
    (lambda c: c["teacher"].update(model="ensemble", args={"members": [], "weights": "uniform"}),
     "teacher.args.members"),
])
def test_config_refusals_name_the_key(change, fragment):
    cfg = onnx_config("a.onnx")
    change(cfg)
    with pytest.raises(UserError, match=fragment) as err:
        validate_config(cfg, "exp.yaml")
    assert "\n" not in str(err.value)


def test_feature_method_with_an_onnx_teacher_is_refused_by_the_cli(files, tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump(onnx_config(str(files["a_onnx"]), method="fitnets")))
    proc = run_cli("run", str(cfg), "--out", str(tmp_path / "run"), "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "fitnets" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


def test_onnx_teacher_end_to_end_with_the_cache_then_export(files, tmp_path):
    cfg = onnx_config(str(files["a_probs"]))
    cfg["distill"]["cache"] = {"enabled": True}
    cfg["deploy"] = {"enabled": True, "formats": ["onnxruntime-fp32"], "quantize": False, "latency_runs": 5,
                     "qat": "off"}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    proc = run_cli("run", str(tmp_path / "exp.yaml"), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    teacher = metrics["models"]["teacher"]
    assert teacher["source"].startswith("onnx:") and teacher["onnx"]["output"] == "probabilities"
    assert (out / "teacher.onnx").read_bytes() == files["a_probs"].read_bytes()
    assert (out / "cache" / "teacher_outputs" / "meta.json").is_file() and not (out / "teacher.pt").exists()
    assert "deploy" not in teacher and "not re-exported" in teacher["deploy_skipped"]
    for role in ("student_scratch", "student_kd"):
        assert len(metrics["models"][role]["train"]["history"]) == 1
        assert "onnxruntime-fp32" in metrics["models"][role]["deploy"]["formats"]
    from edgedistill.config import resolve_config
    from edgedistill.pipeline import load_data

    data = load_data(resolve_config(out / "config.yaml"))
    expected = files["a"](torch.as_tensor(data.x_test)).argmax(1).numpy()
    assert teacher["test"]["accuracy"] == pytest.approx(float((expected == data.y_test).mean()))
    proc = run_cli("export", str(out), "--format", "onnxruntime-int8", "--role", "student_kd")
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime-int8" in json.loads((out / "metrics.json").read_text())["models"]["student_kd"]["deploy"][
        "formats"]


def test_ensemble_teacher_end_to_end(files, tmp_path):
    cfg = tiny_config()
    cfg["teacher"] = {"model": "ensemble", "args": {"weights": "val_accuracy", "members": [
        {"model": "onnx", "args": {"path": str(files["a_onnx"])}},
        {"model": "test_teachers:toy_factory", "checkpoint": member_checkpoint(files["b"], tmp_path / "b.pt")}]}}
    result = edgedistill.run(cfg, out_dir=tmp_path / "run", progress=False)
    teacher = result.metrics["models"]["teacher"]
    assert [m["weight"] for m in teacher["ensemble"]["members"]] == pytest.approx(
        [a / sum(m["val_accuracy"] for m in teacher["ensemble"]["members"]) for a in
         (m["val_accuracy"] for m in teacher["ensemble"]["members"])])
    assert all((tmp_path / "run" / f).is_file() for f in teacher["files"])
    assert "train" in result.metrics["models"]["student_kd"]

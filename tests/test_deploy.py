"""Edge deployment on real artefacts: ONNX export checked by ONNX Runtime, int8 files, peak RAM, fit verdicts."""
import json
import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import edgedistill
from edgedistill.pipeline import stages
from edgedistill.deploy import deploy_model, get_device, load_catalog, preferred_format
from edgedistill.deploy.devices import DeviceProfile
from edgedistill.deploy.fit import Footprint, fit_check
from edgedistill.deploy.onnx_export import export_onnx, ort_logits
from edgedistill.deploy.profile import count_macs, peak_activation_bytes
from edgedistill.errors import UserError
from edgedistill.models import create_model
from conftest import run_cli


def test_peak_activation_matches_hand_computation(tmp_path):
    """X(8) -relu-> A(8) -matmul W-> B(16) -relu-> C(16); D = concat(C, A) (24). A skips ahead, so it stays live.

    Live sets in fp32 bytes: relu 32+32=64; matmul A32+B64=96; relu A32+B64+C64=160; concat A32+C64+D96=192.
    """
    w = helper.make_tensor("W", TensorProto.FLOAT, [8, 16], np.zeros(128, dtype=np.float32))
    nodes = [helper.make_node("Relu", ["X"], ["A"]), helper.make_node("MatMul", ["A", "W"], ["B"]),
             helper.make_node("Relu", ["B"], ["C"]), helper.make_node("Concat", ["C", "A"], ["D"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("D", TensorProto.FLOAT, ["batch", 24])], [w])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert peak_activation_bytes(path) == 192
    assert peak_activation_bytes(path, bytes_per_element=1) == 48
    assert peak_activation_bytes(path, batch=2) == 384
    # one tensor kept wider (as a 16-bit input is): at one byte otherwise, the concat's live set A4x8+C16+D24 = 72
    assert peak_activation_bytes(path, bytes_per_element=1, tensor_bytes={"A": 4}) == 72


def test_macs_of_a_linear_layer():
    assert count_macs(torch.nn.Linear(10, 3), (10,)) == 30


def _device(**kw) -> DeviceProfile:
    base = dict(name="toy", description="toy", flash_bytes=1000, ram_bytes=500, cores=1, dtypes=["int8"],
                weights_in_ram=False, latency_budget_ms=10, macs_per_second={"int8": 1e6})
    return DeviceProfile(**{**base, **kw})


def test_fit_check_margins_and_overflow_messages():
    ok = fit_check(_device(), "int8", Footprint(file_bytes=600, estimated_ram_bytes=200, weight_bytes=400, macs=5000))
    assert ok["fits"] and ok["checks"]["flash"]["margin"] == 400 and ok["checks"]["ram"]["used"] == 200
    assert ok["checks"]["latency_ms"]["used"] == pytest.approx(5.0) and ok["measured"] == ["flash"]
    formats = ["onnxruntime-fp32", "onnxruntime-int8"]
    assert preferred_format(formats, _device()) == "onnxruntime-int8"
    assert preferred_format(formats, get_device("jetson_nano")) == "onnxruntime-fp32"
    bad = fit_check(_device(weights_in_ram=True), "int8", Footprint(1500, 200, 400, macs=20000))
    assert not bad["fits"]
    assert bad["checks"]["ram"]["used"] == 600  # weights count where they live in RAM
    text = " ".join(bad["overflows"])
    assert "flash needs 1.5 KB of 1000 B (over by 500 B)" in text and "latency 20.0 ms exceeds" in text
    assert "fp32 is not among" in fit_check(_device(), "fp32", Footprint(1, 1, 1, 1))["overflows"][0]


def test_fit_check_prefers_what_a_runtime_measured_and_keeps_the_estimate():
    """A TFLite Micro arena of 450 B overflows a 400 B device whose graph-walk estimate (200 B) would have fit; the
    runtime's flash is added to the file, and both figures say how they were obtained."""
    device = _device(ram_bytes=400, runtime_flash_bytes=300, runtime_source="a test figure")
    v = fit_check(device, "int8", Footprint(600, 200, 400, 5000, measured_ram_bytes=450, ram_how="TFLM arena"))
    ram, flash = v["checks"]["ram"], v["checks"]["flash"]
    assert not v["fits"] and ram["used"] == 450 and ram["estimate"] == 200 and ram["how"] == "measured: TFLM arena"
    assert flash["used"] == 900 and "runtime and kernels (estimated)" in flash["how"] and v["measured"] == ["flash", "ram"]
    assert v["overflows"] == ["ram needs 450 B of 400 B (over by 50 B)"]


def test_each_packaged_profile_makes_only_files_of_its_own_precisions():
    """A packaged format whose dtype the device lacks is judged 'does not fit' for every student (jetson_nano listed
    onnxruntime-int8 beside dtypes fp32 and fp16)."""
    for name, device in load_catalog().items():
        assert {f.rpartition("-")[2] for f in device.formats} <= set(device.dtypes), name


def test_catalog_has_the_mission_devices_and_takes_user_files(tmp_path):
    names = set(load_catalog())
    assert {"sensor_node", "mcu", "raspberry_pi_4", "jetson_nano", "smartphone", "host"} <= names
    mcu = get_device("mcu")
    assert mcu.ram_bytes == 320 * 1024 and mcu.flash_bytes == 1024 * 1024 and mcu.macs_source
    own = tmp_path / "mine.yaml"
    own.write_text("watch:\n  description: a watch\n  flash_bytes: 4096\n  ram_bytes: 2048\n  cores: 1\n"
                   "  dtypes: [int8]\n  weights_in_ram: false\n")
    assert get_device("watch", own).flash_bytes == 4096
    own.write_text("watch:\n  description: a watch\n  flash_bytes: -1\n")
    with pytest.raises(UserError, match="device 'watch': key 'flash_bytes'"):
        load_catalog(own)
    with pytest.raises(UserError, match="unknown device 'toaster'"):
        get_device("toaster")


def test_export_matches_torch_and_int8_is_smaller(tmp_path):
    from edgedistill.data import load_dataset

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model("convnet", data.input_shape, 10, {"channels": [32, 64]}).eval()
    with torch.no_grad():
        torch_logits = model(torch.as_tensor(data.x_test)).numpy()
    dep = deploy_model(model, "student_kd", data.input_shape, tmp_path, data, torch_logits, data.x_train[:64],
                       get_device("mcu"), ["onnxruntime-fp32", "onnxruntime-int8"], latency_runs=5)
    fp32, int8 = dep["formats"]["onnxruntime-fp32"], dep["formats"]["onnxruntime-int8"]
    assert fp32["max_abs_logit_diff"] <= 1e-4 and fp32["argmax_agreement"] == 1.0
    torch_acc = float(np.mean(torch_logits.argmax(1) == data.y_test))
    assert fp32["test_accuracy"] == pytest.approx(torch_acc)
    assert int8["file_bytes"] < 0.35 * fp32["file_bytes"]
    assert (tmp_path / "student_kd_int8.onnx").stat().st_size == int8["file_bytes"]
    assert 0 <= int8["val_accuracy"] <= 1 and dep["preferred"] == "onnxruntime-int8"
    assert int8["host_latency"]["latency_p50_ms"] > 0 and int8["host_latency"]["measured_on"] == "host"
    assert dep["fit"]["onnxruntime-int8"]["fits"] and not dep["fit"]["onnxruntime-fp32"]["fits"]
    reloaded = ort_logits(tmp_path / "student_kd_fp32.onnx", data.x_test[:5])
    assert reloaded.shape == (5, 10)


@pytest.mark.parametrize("name,args,shape", [pytest.param("gru", {"hidden": 8, "layers": 1}, (1, 20),
                                                          marks=pytest.mark.slow),  # torch's RNN export: 13 s
                                             ("transformer", {"patch": 4, "dim": 16, "depth": 1, "heads": 2}, (1, 20))])
def test_teacher_families_export(tmp_path, name, args, shape):
    model = create_model(name, shape, 3, args).eval()
    path = export_onnx(model, shape, tmp_path / f"{name}.onnx")
    x = np.random.default_rng(0).standard_normal((5, *shape)).astype(np.float32)
    with torch.no_grad():
        assert np.abs(ort_logits(path, x) - model(torch.as_tensor(x)).numpy()).max() <= 1e-4


def test_pipeline_deploys_every_model_and_reports_fit(deployed_run):
    """The MCU profile's deliverable: a TFLite Micro int8 .tflite with its C pair, RAM from the measured arena plus
    the margin the header adds to it."""
    out, metrics = deployed_run
    for role in ("teacher", "student_scratch", "student_kd"):
        dep = metrics["models"][role]["deploy"]
        assert set(dep["formats"]) == {"tflm-int8"} and dep["preferred"] == "tflm-int8", dep
        tflm = dep["formats"]["tflm-int8"]
        assert (out / "export" / f"{role}_int8.tflite").stat().st_size == tflm["file_bytes"]
        header = (out / "export" / f"{role}_int8.h").read_text()
        assert f"#define {role.upper()}_INT8_ARENA_MEASURED_BYTES {tflm['measured_ram_bytes']}\n" in header
        assert "resolver.AddConv2D()" in header or "resolver.AddFullyConnected()" in header
        assert "alignas(16)" in (out / "export" / f"{role}_int8.cc").read_text()
        ram = dep["fit"]["tflm-int8"]["checks"]["ram"]
        # judged against the arena the header tells the firmware to allocate: measured + CMSIS-NN scratch margin
        assert f"#define {role.upper()}_INT8_ARENA_BYTES {ram['used']}\n" in header
        assert ram["used"] == tflm["measured_ram_bytes"] + tflm["arena_margin_bytes"]
        assert ram["how"].startswith("measured: smallest tensor arena")
        assert tflm["arena_margin_bytes"] == 0 or "scratch margin (the C header's ARENA_BYTES" in ram["how"]
        assert ram["estimate"] == tflm["peak_activation_bytes"]
    assert metrics["models"]["student_kd"]["deploy"]["formats"]["tflm-int8"]["arena_margin_bytes"] > 0  # convnet
    assert metrics["early_fit_check"]["fits"] and metrics["early_fit_check"]["format"] == "tflm-int8"
    report = (out / "report.md").read_text()
    assert "## Deployment" in report and "the KD student as tflm-int8 fits" in report
    assert "export/student_kd_int8.tflite` + student_kd_int8.h, student_kd_int8.cc" in report
    assert json.loads((out / "metrics.json").read_text())["device"]["name"] == "mcu"


def test_student_that_cannot_fit_is_warned_before_training(tmp_path, tiny, monkeypatch, caplog):
    class Stop(Exception):
        pass

    def teacher_not_reached(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(stages, "obtain_teacher", teacher_not_reached)
    cfg = tiny(student="mlp", student_args={"hidden": [1024, 1024]})
    cfg["deploy"] = {"enabled": True}
    cfg["device"] = "sensor_node"
    cfg["deploy"]["formats"] = ["onnxruntime-int8"]  # the verdict's figures here do not need the TFLM runtime
    with caplog.at_level(logging.WARNING, logger="edgedistill"), pytest.raises(Stop):
        edgedistill.run(cfg, out_dir=tmp_path / "r", progress=False)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "as int8 on device 'sensor_node' does not fit: " in warning
    assert "flash needs" in warning and "over by" in warning


def test_devices_command():
    proc = run_cli("devices")
    assert proc.returncode == 0 and "raspberry_pi_4" in proc.stdout and "320.0 KB" in proc.stdout


def test_pruning_needs_a_budget(tiny):
    from edgedistill.config import resolve_config

    cfg = tiny()
    cfg["compress"] = {"prune": {"enabled": True}}
    with pytest.raises(UserError, match="compress.prune.*target_params or target_macs"):
        resolve_config(cfg)


def test_fake_quant_leaves_weights_on_the_int8_grid():
    from edgedistill.compress.qat import attach_fake_quant, detach_fake_quant

    torch.manual_seed(0)
    model = create_model("convnet", (1, 8, 8), 4, {"channels": [4, 8]})
    handles = attach_fake_quant(model)
    model.train()
    loss = model(torch.randn(16, 1, 8, 8)).square().mean()
    loss.backward()  # gradients flow through the rounding (straight-through)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.dim() > 1)
    detach_fake_quant(model, handles)
    assert not any(k for k in model.state_dict() if "parametrizations" in k)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            w = m.weight.detach()
            scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127
            steps = w / scale
            assert torch.allclose(steps, steps.round(), atol=1e-3)


def test_fake_quant_puts_an_embedding_table_on_one_int8_grid():
    """ONNX Runtime quantizes a Gather's table per tensor, so QAT must train against that grid, not leave it fp32."""
    from edgedistill.compress.qat import attach_fake_quant, detach_fake_quant

    torch.manual_seed(0)
    model = create_model("text_cnn", (16,), 2, {"vocab_size": 50, "dim": 8, "channels": 8})
    handles = attach_fake_quant(model)
    assert [h.levels for m in model.modules() for h in m._forward_pre_hooks.values()] == [255, 255, 255]
    model(torch.randint(0, 50, (4, 16)).float()).sum().backward()
    assert model.embed.parametrizations.weight.original.grad.abs().sum() > 0
    detach_fake_quant(model, handles)
    table = model.embed.weight.detach()
    steps = table / (table.abs().max() / 127)
    assert torch.allclose(steps, steps.round(), atol=1e-3) and len(steps.round().unique()) > 20


def test_sixteen_bit_input_keeps_the_detail_a_spike_crushes(tmp_path):
    """A power trace: small steps that carry the signal plus one large spike per series. With an 8-bit input the
    spike stretches the input's grid 257x coarser than a 16-bit input's; the rest of the model stays int8."""
    from edgedistill.deploy.quantize import quantize_int8
    from edgedistill.compress.qat import attach_fake_quant

    torch.manual_seed(0)
    model = create_model("convnet", (1, 64), 3, {"channels": [8, 8], "head": "avg"}).eval()
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 0.01, (64, 1, 64)) + rng.integers(0, 3, (64, 1, 1)) * 0.02).astype(np.float32)
    x[:, 0, 5] = 40.0
    fp32 = export_onnx(model, (1, 64), tmp_path / "m.onnx")
    ref = ort_logits(fp32, x)

    def input_grid_and_error(bits: int) -> tuple[float, float]:
        path = quantize_int8(fp32, x[:32], tmp_path / f"m{bits}.onnx", input_bits=bits)
        graph = onnx.load(str(path)).graph
        q = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
        init = {i.name: i for i in graph.initializer}
        assert init[q.input[2]].data_type == (TensorProto.UINT16 if bits == 16 else TensorProto.UINT8)
        assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 1  # later tensors are quantized too
        return float(onnx.numpy_helper.to_array(init[q.input[1]])), float(np.abs(ort_logits(path, x) - ref).mean())

    (grid8, err8), (grid16, err16) = input_grid_and_error(8), input_grid_and_error(16)
    assert grid8 / grid16 == pytest.approx(257, rel=0.01)
    assert err16 <= err8

    attach_fake_quant(model, input_bits=16, example=torch.as_tensor(x[:2]))
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear))]
    assert [next(iter(m._forward_pre_hooks.values())).levels for m in convs] == [65535, 255, 255]


@pytest.mark.parametrize("name, shape", [("inception_time", (1, 32)), ("convnet", (32,)),
                                         pytest.param("gru", (1, 32), marks=pytest.mark.slow),  # a 20 s export
                                         ("text_cnn", (16,))])
def test_sixteen_bit_input_lands_where_onnx_runtime_puts_it(tmp_path, name, shape):
    """QAT must widen exactly the layers the export feeds 16 bits (every InceptionTime branch that reads the input,
    none in a GRU); a model whose input is never quantized is refused, not recorded as 16-bit."""
    from edgedistill.compress.qat import attach_fake_quant
    from edgedistill.deploy.quantize import quantize_int8, quantized_input_bits

    torch.manual_seed(0)
    args = {"vocab_size": 50} if name == "text_cnn" else {}
    model = create_model(name, shape, 3, args).eval()
    x = np.random.default_rng(0).integers(0, 50, (32, *shape)).astype(np.float32)
    fp32 = export_onnx(model, shape, tmp_path / "m.onnx")
    wide_in_onnx = set()
    try:
        path = quantize_int8(fp32, x, tmp_path / "q.onnx", input_bits=16)
    except UserError as exc:
        assert name in ("gru", "text_cnn") and "deploy.input_bits: 16" in str(exc)
        assert quantized_input_bits(quantize_int8(fp32, x, tmp_path / "q8.onnx")) is None
    else:
        assert quantized_input_bits(path) == 16
        graph = onnx.load(str(path)).graph
        zero_type = {i.name: i.data_type for i in graph.initializer}
        dq = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
        for n in graph.node:  # a layer's name survives in its weight's initializer: modules_.2.convs.1.weight_quantized
            if n.op_type in ("Conv", "Gemm", "MatMul") and zero_type.get(dq[n.input[0]].input[2]) == TensorProto.UINT16:
                weight = dq[n.input[1]].input[0].removesuffix("_quantized").removesuffix(".weight")
                wide_in_onnx.add(weight)
    attach_fake_quant(model, input_bits=16, example=torch.as_tensor(x[:2]))
    wide_in_qat = {name for name, m in model.named_modules()
                   if any(getattr(h, "levels", 0) == 65535 for h in m._forward_pre_hooks.values())}
    assert wide_in_qat == wide_in_onnx
    assert (len(wide_in_onnx) > 1) == (name == "inception_time")


def test_sixteen_bit_input_in_a_run(tmp_path, tiny):
    """A GRU teacher cannot take a 16-bit input: it still deploys (int8 with a float input, the refusal recorded);
    the CNN student's int8 export and its QAT take 16 bits. A GRU student is refused before training, whatever the
    device runs."""
    small_gru = {"hidden": 8, "layers": 1, "bidirectional": False}  # an export unrolls each cell, step by step
    cfg = tiny(teacher="gru", student="convnet", teacher_args=small_gru,
               student_args={"channels": [4, 8], "head": "avg"})
    cfg["device"] = "mcu"
    cfg["deploy"] = {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "input_bits": 16,
                     "qat": "always", "qat_epochs": 1, "formats": ["onnxruntime-fp32", "onnxruntime-int8"],
                     "roles": ["teacher", "student_kd"]}
    models = edgedistill.run(cfg, out_dir=tmp_path / "r", progress=False).metrics["models"]
    teacher = models["teacher"]["deploy"]["formats"]
    assert "deploy.input_bits: 16" in teacher["onnxruntime-int8"]["input_bits_refused"]
    assert "input_bits" not in teacher["onnxruntime-int8"] and "onnxruntime-fp32" in teacher
    for role in ("student_kd", "student_kd_qat"):
        int8 = models[role]["deploy"]["formats"]["onnxruntime-int8"]
        assert int8["input_bits"] == 16 and "input_bits_refused" not in int8
    gru_student = tiny(student="gru", student_args=small_gru)
    gru_student["device"] = "jetson_nano"  # runs fp32: the fit check alone would never quantize
    gru_student["deploy"] = {"enabled": True, "input_bits": 16}
    with pytest.raises(UserError, match="deploy.input_bits: 16, but this model takes its input unquantized"):
        edgedistill.run(gru_student, out_dir=tmp_path / "g", progress=False)
    assert not list((tmp_path / "g").glob("*.pt")), "refused before any training"

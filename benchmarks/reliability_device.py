"""Issue 31's cases, each run through the CLI as a user meets it: students a device's runtime cannot run, runs,
tunes and exports that make no deliverable, the Ethos-U deliverable, messages that must name the op, the field and
the file, and progress piped into a log. Writes the "reliability_device" section of docs/reliability.md.

    python benchmarks/reliability_device.py          (or python benchmarks/reliability.py --parts device)

Each row: exit code, whether a traceback was printed, stderr lines, seconds the command took, whether any file
appeared or changed in the case's folder beyond the run folder, and the last line of stderr.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from record import header, replace_section  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
USER_MODELS = ROOT / "tests"  # user_models.py: the model factories a user might bring
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(USER_MODELS), os.environ.get("PYTHONPATH")))),
       "OMP_NUM_THREADS": "1"}
TRAIN = {"epochs": 1, "batch_size": 32, "lr": 0.003, "max_steps_per_epoch": 4}
Setup = Callable[[Path], tuple[list[str], dict]]


def base_config(student: str = "convnet", device: str = "mcu", **deploy) -> dict:
    """The tiny mnist1d run of the test suite, written out here so this script keeps its own cases."""
    return {"name": "device-case", "seed": 0, "device": device,
            "data": {"name": "mnist1d", "limit_train": 200, "limit_test": 100},
            "teacher": {"model": "resnet", "train": dict(TRAIN)},
            "student": {"model": student, "train": dict(TRAIN)},
            "distill": {"method": "kd", "temperature": 4.0, "alpha": 0.9},
            "deploy": {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "qat": "off", **deploy}}


def cli(args: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgedistill", *args], capture_output=True, text=True,
                          env={**ENV, **(env_extra or {})}, timeout=900)


def write(folder: Path, cfg: dict | str, name: str = "exp.yaml") -> Path:
    (folder / name).write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return folder / name


def run_case(cfg: dict | str, *extra: str, env: dict | None = None, quiet: bool = True) -> Setup:
    def setup(tmp: Path) -> tuple[list[str], dict]:
        return ["run", str(write(tmp, copy.deepcopy(cfg))), "--out", str(tmp / "run"), *extra,
                *(["--quiet"] if quiet else [])], env or {}
    return setup


def tune_case(cfg: dict, *extra: str, quiet: bool = True) -> Setup:
    def setup(tmp: Path) -> tuple[list[str], dict]:
        return ["tune", str(write(tmp, copy.deepcopy(cfg))), "--out", str(tmp / "run"), "--methods", "kd", *extra,
                *(["--quiet"] if quiet else [])], {}
    return setup


def with_checkpoint(path_of: Callable[[Path], Path]) -> Setup:
    def setup(tmp: Path) -> tuple[list[str], dict]:
        cfg = base_config()
        cfg["teacher"]["checkpoint"] = str(path_of(tmp))
        return ["run", str(write(tmp, cfg)), "--out", str(tmp / "run"), "--quiet"], {}
    return setup


def folder_at(tmp: Path) -> Path:
    (tmp / "checkpoints").mkdir()
    return tmp / "checkpoints"


def fifo_at(tmp: Path) -> Path:
    os.mkfifo(tmp / "teacher.pt")
    return tmp / "teacher.pt"


def user_module(source: str, role: str = "student") -> Setup:
    def setup(tmp: Path) -> tuple[list[str], dict]:
        (tmp / "my_model.py").write_text(source)
        cfg = base_config(device="host")
        cfg[role]["model"] = "my_model:build"
        return (["run", str(write(tmp, cfg)), "--out", str(tmp / "run"), "--quiet"],
                {"PYTHONPATH": os.pathsep.join([str(tmp), ENV["PYTHONPATH"]])})
    return setup


def yaml_with(old: str, new: str, cfg: dict | None = None) -> Setup:
    def setup(tmp: Path) -> tuple[list[str], dict]:
        text = yaml.safe_dump(cfg or base_config(device="host", formats=["onnxruntime-fp32"], quantize=False))
        assert old in text, old
        return ["run", str(write(tmp, text.replace(old, new, 1))), "--out", str(tmp / "run"), "--quiet"], {}
    return setup


def bad_cache(tmp: Path) -> tuple[list[str], dict]:
    from PIL import Image

    for label in ("a", "b"):
        (tmp / "imgs" / label).mkdir(parents=True)
        for i in range(12):
            Image.new("L", (8, 8), color=20 * i + (100 if label == "a" else 0)).save(tmp / "imgs" / label / f"{i}.png")
    (tmp / "a_file").write_text("x")
    cfg = base_config(device="host")
    cfg["data"] = {"name": "image_folder", "path": str(tmp / "imgs")}
    return (["run", str(write(tmp, cfg)), "--out", str(tmp / "run"), "--quiet"],
            {"EDGEDISTILL_CACHE": str(tmp / "a_file" / "cache")})


def finished(tmp: Path, cfg: dict) -> Path:
    """A finished run in tmp/done, for the export cases."""
    done = tmp / "done"
    proc = cli(["run", str(write(tmp, cfg, "done.yaml")), "--out", str(done), "--quiet"])
    if proc.returncode not in (0, 3):
        raise SystemExit(f"the run an export case starts from failed: {proc.stderr[-500:]}")
    return done


def export_case(cfg: dict, *args: str) -> Setup:
    def setup(tmp: Path) -> tuple[list[str], dict]:
        return ["export", str(finished(tmp, cfg)), *args], {}
    return setup


def onnx_teacher_export(tmp: Path) -> tuple[list[str], dict]:
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(40, 10)).eval()
    torch.onnx.export(net, (torch.zeros(2, 1, 40),), str(tmp / "t.onnx"), dynamo=True, external_data=False,
                      input_names=["input"], output_names=["out"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    cfg = base_config(device="host", formats=["onnxruntime-fp32"], quantize=False)
    cfg["teacher"] = {"model": "onnx", "args": {"path": str(tmp / "t.onnx")}}
    return ["export", str(finished(tmp, cfg)), "--format", "onnxruntime-fp32", "--role", "teacher"], {}


def failing_search(tmp: Path) -> tuple[list[str], dict]:
    cfg = base_config(calibration_samples=16)
    cfg["student"] = {"model": "auto", "search": {"trials": 2, "epochs": 1, "max_steps_per_epoch": 2},
                      "train": dict(TRAIN)}
    cfg["latency_budget_ms"] = 1e-6
    first = cli(["run", str(write(tmp, cfg)), "--out", str(tmp / "run"), "--quiet"])
    assert first.returncode == 2, first.stderr
    return ["run", str(tmp / "exp.yaml"), "--out", str(tmp / "run"), "--quiet"], {}  # the corrected rerun's start


def misspelt_npu(tmp: Path) -> tuple[list[str], dict]:
    write(tmp, {"my_npu": {"description": "typo", "flash_bytes": 2097152, "ram_bytes": 524288, "cores": 1,
                           "dtypes": ["int8"], "weights_in_ram": False, "formats": ["tflm-int8"],
                           "npu": {"accelerator_config": "ethos-u55-12"}}}, "devices.yaml")
    cfg = base_config(device="my_npu")
    cfg["device_catalog"] = str(tmp / "devices.yaml")
    return ["run", str(write(tmp, cfg)), "--out", str(tmp / "run"), "--quiet"], {}


SORT_HOST = base_config("user_models:sorting_student", "host", formats=["onnxruntime-fp32"], quantize=False,
                        roles=["student_kd"])
GRU_ANYWAY = base_config("user_models:gru_student", required=False, roles=["student_kd"])
SYNTAX = "import torch.nn as nn\n\ndef build(input_shape, num_classes)\n    return nn.Linear(40, num_classes)\n"
IMPORT_FAILS = "import torch.nn as nn\n\nWIDTH = undefined_name * 2\n"

CASES: list[tuple[str, Setup]] = [
    ("GRU student on `mcu` (TFLite Micro)", run_case(base_config("user_models:gru_student"))),
    ("`torch.sort` student on `mcu`", run_case(base_config("user_models:sorting_student"))),
    ("numpy call in the student's forward, `mcu`", run_case(base_config("user_models:numpy_student"))),
    ("LSTM student (zoo `lstm`) on `mcu`", run_case(base_config("lstm"))),
    ("GRU student on `sensor_node`", run_case(base_config("user_models:gru_student", "sensor_node"))),
    ("`torch.sort` student on `ethos_u55`", run_case(base_config("user_models:sorting_student", "ethos_u55"))),
    ("`kthvalue` student on `mcu`", run_case(base_config("user_models:unexportable"))),
    ("`kthvalue` student on `host` (ONNX Runtime)", run_case(base_config("user_models:unexportable", "host"))),
    ("numpy student on `host`", run_case(base_config("user_models:numpy_student", "host"))),
    ("GRU student on `mcu` with `deploy.required: false`", run_case(GRU_ANYWAY)),
    ("student whose graph changes once trained (sorts), `mcu`",
     run_case(base_config("user_models:sorts_once_trained"))),
    ("misspelt NPU: `accelerator_config: ethos-u55-12`", misspelt_npu),
    ("`ethos_u55`: the deliverable line", run_case(base_config(device="ethos_u55", roles=["student_kd"]))),
    ("`export --format tflm-int8 --format onnxruntime-int8`, student sorts",
     export_case(SORT_HOST, "--format", "tflm-int8", "--format", "onnxruntime-int8", "--role", "student_kd")),
    ("`export --format tensorrt-int8`", export_case(SORT_HOST, "--format", "tensorrt-int8")),
    ("`export --format tflm-int8` of a GRU run made with `deploy.required: false`",
     export_case(GRU_ANYWAY, "--format", "tflm-int8")),
    ("`export --role teacher` of an ONNX-teacher run", onnx_teacher_export),
    ("`deploy.qat: off` unquoted", yaml_with("qat: 'off'", "qat: off")),
    ("`deploy.qat: on` unquoted", yaml_with("qat: 'off'", "qat: on")),
    ("`student.train.optimizer: no`", yaml_with("optimizer: adamw", "optimizer: no",
                                                  base_config() | {"student": {"model": "convnet", "train": {
                                                      **TRAIN, "optimizer": "adamw"}}})),
    ("`accelerator: no`", yaml_with("accelerator: cpu", "accelerator: no", base_config() | {"accelerator": "cpu"})),
    ("`--set deploy.qat=off`", run_case(base_config(device="host", formats=["onnxruntime-fp32"], quantize=False),
                                        "--set", "deploy.qat=off")),
    ("`--set =5`", run_case(base_config(), "--set", "=5")),
    ("`--set teacher..model=mlp`", run_case(base_config(), "--set", "teacher..model=mlp")),
    ("`--set .=1`", run_case(base_config(), "--set", ".=1")),
    ("`teacher.checkpoint` is a folder", with_checkpoint(folder_at)),
    ("`teacher.checkpoint: /dev/zero`", with_checkpoint(lambda tmp: Path("/dev/zero"))),
    ("`teacher.checkpoint` is a named pipe", with_checkpoint(fifo_at)),
    ("student model file with a SyntaxError", user_module(SYNTAX)),
    ("teacher model file with a SyntaxError", user_module(SYNTAX, "teacher")),
    ("student model module whose top-level code raises", user_module(IMPORT_FAILS)),
    ("`EDGEDISTILL_CACHE` under a file, `image_folder` data", bad_cache),
    ("a second YAML document (`---`)", lambda tmp: (["run", str(write(tmp, yaml.safe_dump(base_config())
                                                                          + "---\nseed: 3\n")),
                                                      "--out", str(tmp / "run")], {})),
    ("three YAML documents", lambda tmp: (["run", str(write(tmp, "seed: 1\n---\nseed: 2\n---\nseed: 3\n")),
                                           "--out", str(tmp / "run")], {})),
    ("`student: auto` that finds nothing, then the same rerun", failing_search),
    ("progress piped to a file (no `--quiet`)", run_case(base_config(device="host", formats=["onnxruntime-fp32"],
                                                                      quantize=False), quiet=False)),
    ("`edgedistill tune` of a GRU student on `mcu`",
     tune_case(base_config("user_models:gru_student"), "--trials", "2", "--seeds", "0")),
    ("`edgedistill tune` whose best recipe over `--seeds 2` makes no deliverable (student sorts once trained), `mcu`",
     tune_case(base_config("user_models:sorts_once_trained", roles=["student_kd"]), "--trials", "1", "--seeds", "2")),
    ("`edgedistill tune` piped to a file (no `--quiet`)",
     tune_case(base_config(device="host", formats=["onnxruntime-fp32"], quantize=False), "--trials", "2",
               "--seeds", "0", quiet=False)),
]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and f.relative_to(folder).parts[0] not in ("run", "done")}


def cell(text: str, tmp: Path) -> str:
    return text.replace("|", "\\|").replace(str(tmp), "DIR").replace(str(ROOT) + "/", "")


def row(i: int, what: str, setup: Setup, tmp: Path) -> str:
    folder = tmp / f"case{i}"
    folder.mkdir()
    argv, env = setup(folder)
    before = snapshot(folder)
    t0 = time.perf_counter()
    proc = cli(argv, env)
    seconds = time.perf_counter() - t0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    changed = "unchanged" if snapshot(folder) == before else "CHANGED"
    run = folder / "run"
    wrote = "no run folder" if not run.exists() else f"run folder ({len(list(run.rglob('*')))} entries)"
    extra = f"; `\\r` in output: {(proc.stderr + proc.stdout).count(chr(13))}" if "--quiet" not in argv else ""
    deliverable = next((ln for ln in proc.stdout.splitlines() if ln.startswith("deliverable:")), "")
    last = lines[-1] if lines else (deliverable or "(nothing on stderr)")
    return (f"| {i} | {what} | {proc.returncode} | {'yes' if 'Traceback' in proc.stderr else 'no'} | {len(lines)} | "
            f"{seconds:.0f} | {changed}; {wrote}{extra} | {cell(last, folder)} |")


def table(tmp: Path) -> str:
    rows = ["| # | what the user did | exit | traceback | stderr lines | seconds | files | last line of stderr |",
            "|---|---|---|---|---|---|---|---|"]
    rows += [row(i, what, setup, tmp) for i, (what, setup) in enumerate(CASES, 1)]
    return (f"{len(CASES)} cases, the tiny mnist1d run of the tests (200 training samples, one epoch of four steps) "
            "unless the case says otherwise; `files` compares the case's folder (its configs, user files) before "
            "and after, and says whether a run folder was left.\n\n" + "\n".join(rows))


def main() -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        body = table(Path(d))
    replace_section("reliability_device", f"{header(time.perf_counter() - t0)}\n{body}\n", doc=DOC)
    print(body)


if __name__ == "__main__":
    main()

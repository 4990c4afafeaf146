"""Experiment tracking as a user meets it: runs logged to a real MLflow server (SQLite store) and read back with
MlflowClient, TensorBoard event files read back with TensorBoard's own reader, a killed tracked run resumed into the
same tracked run, an unreachable tracker, and torchrun. `python tests/test_tracking.py` remakes the README's
screenshot of the MLflow run page (docs/mlflow_run_page.png) from a real run."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import TESTS, run_cli, tiny_config
from postgres_server import free_port
from test_cli import assert_one_line_error

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROLES = ("teacher", "student_scratch", "student_kd")


@contextlib.contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """`mlflow server` on a free localhost port, its runs in SQLite and its artifacts in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (folder / "server.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                                 "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--workers", "1",
                                 "--artifacts-destination", str(folder / "artifacts")],
                                cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (folder / "server.log").read_text()[-2000:]
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/health", timeout=5).status == 200:
                    break
            time.sleep(1)
        yield url
    finally:  # the store is the test's own, so no graceful stop (its workers take seconds to drain)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def curve(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def same_points(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """The same steps, each once, with the same values (TensorBoard keeps float32)."""
    return [s for s, _ in got] == [s for s, _ in expected] and \
        [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6, abs=1e-9)


def deployed_tiny(name: str) -> dict:
    cfg = tiny_config()
    cfg["name"] = name
    cfg["student"]["train"]["epochs"] = 3
    cfg["device"] = "host"  # ONNX Runtime files: the deliverable, in seconds
    cfg["deploy"] = {"enabled": True, "latency_runs": 5, "calibration_samples": 32, "qat": "off", "every_seed": False,
                     "roles": ["student_kd"]}
    return cfg


def test_seeds_run_on_a_real_mlflow_server_reads_back_whole(tmp_path):
    from mlflow import MlflowClient

    cfg_file = write_yaml(tmp_path / "exp.yaml", deployed_tiny("tracked-seeds"))
    out = tmp_path / "seeds"
    with mlflow_server(tmp_path / "server") as url:
        proc = run_cli("run", str(cfg_file), "--seeds", "2", "--out", str(out), "--quiet", "--track", "mlflow",
                       cwd=tmp_path, env_extra={"MLFLOW_TRACKING_URI": url})
        assert proc.returncode == 0, proc.stderr
        assert "warning" not in proc.stderr, proc.stderr
        client = MlflowClient(tracking_uri=url)
        experiment = client.get_experiment_by_name("tracked-seeds")
        runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
        assert sorted(runs) == ["seed_0", "seed_1", "seeds"]
        parent = runs["seeds"]
        assert "mlflow.parentRunId" not in parent.data.tags
        assert json.loads((out / "tracking.json").read_text())["mlflow"]["run_id"] == parent.info.run_id
        for seed in (0, 1):
            child = runs[f"seed_{seed}"]
            assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
            assert child.info.status == "FINISHED"
            assert child.data.params["seed"] == str(seed) and child.data.params["student.train.epochs"] == "3"
            assert_metrics_match_the_folder(client, child, out / f"seed_{seed}")
        summary = json.loads((out / "seeds.json").read_text())
        assert parent.data.metrics["student_kd/test_accuracy_mean"] == pytest.approx(
            summary["models"]["student_kd"]["accuracy"]["mean"])
        assert parent.data.tags["noise_verdict"] in ("gain beyond the noise", "inside the noise",
                                                      "loss beyond the noise")
        first = out / "seed_0"
        deliverable = first / "export" / "student_kd_int8.onnx"
        fetched = client.download_artifacts(runs["seed_0"].info.run_id, "export/student_kd_int8.onnx",
                                            str(tmp_path / "fetched"))
        assert Path(fetched).read_bytes() == deliverable.read_bytes()
        names = {a.path for a in client.list_artifacts(runs["seed_0"].info.run_id)}
        assert {"report.html", "metrics.json", "export"} <= names
        assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"seeds.md", "seeds.json"}
        if CHROMIUM:
            screenshot_run_page(url, runs["seed_0"], tmp_path / "run_page.png")
    assert not (tmp_path / "mlflow.db").exists()  # the URI was given: nothing in the current folder


def assert_metrics_match_the_folder(client, run, run_dir: Path) -> None:
    """The run's curves, test metrics and fit verdict are the run folder's own numbers."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for role, record in metrics["models"].items():
        assert run.data.metrics[f"{role}/test_accuracy"] == pytest.approx(record["test"]["accuracy"])
        assert run.data.metrics[f"{role}/test_f1_macro"] == pytest.approx(record["test"]["f1_macro"])
        if record.get("train"):
            rows = jsonl(run_dir / "logs" / f"{role}.jsonl")
            for key in ("train_loss", "train_accuracy", "val_accuracy", "lr"):
                assert same_points(curve(client, run.info.run_id, f"{role}/{key}"),
                                   [(r["epoch"], r[key]) for r in rows]), (role, key)
    kd = metrics["models"]["student_kd"].get("deploy")
    if kd:
        fmt, fit = kd["formats"]["onnxruntime-int8"], kd["fit"]["onnxruntime-int8"]
        assert run.data.metrics["student_kd/onnxruntime-int8/file_bytes"] == fmt["file_bytes"]
        assert run.data.metrics["student_kd/onnxruntime-int8/test_accuracy"] == pytest.approx(fmt["test_accuracy"])
        assert run.data.metrics["student_kd/onnxruntime-int8/latency_p50_ms"] == pytest.approx(
            fmt["host_latency"]["latency_p50_ms"])
        verdict = run.data.tags["fit.student_kd.onnxruntime-int8"]
        assert verdict == "fits" if fit["fits"] else verdict.startswith("does not fit: ")
        assert run.data.tags["fit"] == ("fits" if fit["fits"] else "does not fit")


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def screenshot_run_page(url: str, run, png: Path, size: tuple[int, int] = (1400, 1000)) -> None:
    """The MLflow UI's page of one run, rendered by headless Chromium (a JS app: given 20 s of virtual time), and
    checked to show that run rather than an error page or a blank one."""
    from PIL import Image, ImageStat

    page = f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"

    def chromium(*args: str) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as profile:
            return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                                   "--no-first-run", "--disable-background-networking", "--disable-component-update",
                                   "--disable-sync", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                                   "--virtual-time-budget=20000", *args, page],
                                  capture_output=True, text=True, timeout=180)

    text = visible_text(chromium("--dump-dom").stdout)
    assert run.info.run_name in text and "Finished" in text and run.info.run_id in text, text[:500]
    chromium(f"--screenshot={png}")
    image = Image.open(png).convert("L")
    assert image.size == size and ImageStat.Stat(image).stddev[0] > 20, "the screenshot is blank"


def test_tensorboard_event_files_hold_every_curve(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config()
    cfg["student"]["train"]["epochs"] = 3
    out = tmp_path / "run"
    proc = run_cli("run", str(write_yaml(tmp_path / "exp.yaml", cfg)), "--out", str(out), "--quiet",
                   "--track", "tensorboard", cwd=tmp_path)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for role in ROLES:
        events = EventAccumulator(str(out / "tensorboard" / role))
        events.Reload()
        rows = jsonl(out / "logs" / f"{role}.jsonl")
        curves = set(rows[0]) - {"epoch"}
        assert curves <= set(events.Tags()["scalars"]), (role, curves - set(events.Tags()["scalars"]))
        for key in curves:
            assert same_points([(e.step, e.value) for e in events.Scalars(key)],
                               [(r["epoch"], r[key]) for r in rows]), (role, key)
        assert events.Scalars("test_accuracy")[-1].value == pytest.approx(metrics["models"][role]["test"]["accuracy"])
    run_events = EventAccumulator(str(out / "tensorboard" / "run"))
    run_events.Reload()
    assert run_events.Scalars("kd_gain_over_scratch")[-1].value == pytest.approx(
        metrics["comparison"]["kd_gain_over_scratch"])
    assert "config/text_summary" in run_events.Tags()["tensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml", "run"]  # nothing beside the run folder


def test_killed_tracked_run_resumes_into_the_same_tracked_run(tmp_path):
    """SIGKILL in the middle of training, then --resume: one MLflow run (in the default local store of the current
    folder) and one TensorBoard curve per role, each epoch once, equal to the epoch log."""
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_reliability import cli_env, digits_config

    cfg = digits_config(tracking={"backends": ["mlflow", "tensorboard"]})
    cfg["student"]["train"] |= {"epochs": 60, "max_steps_per_epoch": 4}  # many short epochs to be killed among
    MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # an existing store
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill", "run", str(write_yaml(tmp_path / "exp.yaml", cfg)),
                             "--out", str(killed), "--quiet"], env=cli_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    students = [killed / "state" / f"{role}.pt" for role in ("student_scratch", "student_kd")]
    deadline = time.monotonic() + 180  # the tracked run exists, the teacher is done, a student is training
    while not ((killed / "tracking.json").exists() and any(p.exists() for p in students)) \
            and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()

    resumed = run_cli("run", "--resume", str(killed), "--quiet", cwd=tmp_path, env_extra={"OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0 and not resumed.stderr.strip(), resumed.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(cfg["name"]).experiment_id])
    assert [r.info.run_id for r in runs] == [json.loads((killed / "tracking.json").read_text())["mlflow"]["run_id"]]
    assert runs[0].info.status == "FINISHED"
    for role in ROLES:
        expected = [(r["epoch"], r["val_accuracy"]) for r in jsonl(killed / "logs" / f"{role}.jsonl")]
        assert [e for e, _ in expected] == list(range(1, len(expected) + 1))
        assert same_points(curve(client, runs[0].info.run_id, f"{role}/val_accuracy"), expected), role
        events = EventAccumulator(str(killed / "tensorboard" / role))
        events.Reload()
        assert same_points([(e.step, e.value) for e in events.Scalars("val_accuracy")], expected), role
    assert (tmp_path / "mlruns").is_dir()  # MLflow's artifacts beside its database, in the current folder


def test_unreachable_tracker_warns_once_and_the_run_completes(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg_file = write_yaml(tmp_path / "exp.yaml", tiny_config())
    out = tmp_path / "run"
    proc = run_cli("run", str(cfg_file), "--out", str(out), "--quiet", "--track", "mlflow",
                   "--set", f"tracking.uri={uri}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "warning" in lines[0] and uri in lines[0], proc.stderr
    for name in ("metrics.json", "report.md", "report.html", "config.yaml", "student_kd.pt"):
        assert (out / name).is_file(), name
    assert not (out / "tracking.json").exists()

    refused = tmp_path / "refused"
    proc = run_cli("run", str(cfg_file), "--out", str(refused), "--track", "mlflow", "--set", f"tracking.uri={uri}",
                   "--set", "tracking.required=true", cwd=tmp_path)
    assert_one_line_error(proc, "tracking.required", uri)
    assert not refused.exists()
    assert_one_line_error(run_cli("run", "--resume", str(out), "--track", "tensorboard"), "drop --track")


def test_under_torchrun_only_rank_0_logs(tmp_path):
    from mlflow import MlflowClient
    from test_reliability import cli_env, digits_config

    cfg = digits_config(tracking={"backends": ["mlflow", "tensorboard"]})
    for role, hidden in (("teacher", [32]), ("student", [8])):
        cfg[role].update(model="mlp", args={"hidden": hidden})
        cfg[role]["train"]["epochs"] = 2
    out = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "edgedistill", "run", str(write_yaml(tmp_path / "exp.yaml", cfg)), "--out", str(out),
                           "--quiet"], env=cli_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(cfg["name"]).experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert curve(client, runs[0].info.run_id, "teacher/val_accuracy")[-1][0] == 2
    for role in ROLES:
        assert len(list((out / "tensorboard" / role).glob("events.out.tfevents.*"))) == 1, role


def test_tune_logs_each_trial_and_the_best_recipes_seeds_as_children_of_the_study(tmp_path):
    """`tune --track mlflow` (MLflow's local store in the current folder): one run for the study holding the
    teacher's curve, one child per trial with its recipe and its KD student's curve, one per rescoring unit with
    the validation accuracy --rescore averages, and the best recipe's --seeds run as a child too, with a child per
    seed."""
    from mlflow import MlflowClient

    cfg = tiny_config(limit_train=200)
    cfg["student"]["train"] |= {"epochs": 2, "max_steps_per_epoch": 6}
    out = tmp_path / "study"
    proc = run_cli("tune", str(write_yaml(tmp_path / "exp.yaml", cfg)), "--out", str(out), "--trials", "2",
                   "--seeds", "2", "--methods", "kd,dist", "--rescore", "2", "--rescore-seeds", "1", "--quiet",
                   "--track", "mlflow", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(cfg["name"]).experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == ["confirm", "rescore 0 seed 1000", "rescore 1 seed 1000", "seed_0", "seed_1",
                               "study", "trial 0", "trial 1"]
    study = by_name["study"]
    assert json.loads((out / "tracking.json").read_text())["mlflow"]["run_id"] == study.info.run_id
    assert len(curve(client, study.info.run_id, "teacher/val_accuracy")) == cfg["teacher"]["train"]["epochs"]
    summary = json.loads((out / "tune.json").read_text())
    assert study.data.metrics["best_val_accuracy"] == pytest.approx(summary["best"]["val_accuracy"])
    for row in summary["trials"]:
        trial = by_name[f"trial {row['number']}"]
        assert trial.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert trial.data.tags["optuna.state"] == row["state"] and trial.info.status == "FINISHED"
        assert trial.data.params["distill.method"] == row["method"]
        logged = jsonl(out / "trials" / f"{row['number']:04d}" / "logs" / "student_kd.jsonl")
        assert same_points(curve(client, trial.info.run_id, "student_kd/val_accuracy"),
                           [(r["epoch"], r["val_accuracy"]) for r in logged])
    assert study.data.metrics["best_val_accuracy_mean"] == pytest.approx(
        next(r["mean"] for r in summary["rescore"]["rows"] if r["number"] == summary["rescore"]["chosen"]))
    for row in summary["rescore"]["rows"]:
        unit = by_name[f"rescore {row['number']} seed 1000"]
        assert unit.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert unit.data.tags["optuna.trial"] == str(row["number"]) and unit.data.tags["rescore.seed"] == "1000"
        assert unit.data.params["seed"] == "1000" and unit.data.params["distill.method"] == row["method"]
        assert unit.data.metrics["best_val_accuracy"] == pytest.approx(row["val_accuracies"][0])
        logged = jsonl(out / "rescore" / f"{row['number']:04d}-seed1000" / "logs" / "student_kd.jsonl")
        assert same_points(curve(client, unit.info.run_id, "student_kd/val_accuracy"),
                           [(r["epoch"], r["val_accuracy"]) for r in logged])
    confirm = by_name["confirm"]
    assert confirm.data.tags["mlflow.parentRunId"] == study.info.run_id and "noise_verdict" in confirm.data.tags
    for seed in ("seed_0", "seed_1"):
        assert by_name[seed].data.tags["mlflow.parentRunId"] == confirm.info.run_id
        assert "student_kd/test_accuracy" in by_name[seed].data.metrics
    assert all(r.info.status == "FINISHED" for r in runs)


def test_outbox_sends_in_order_and_drops_everything_after_a_failure():
    from edgedistill.tracking.outbox import Outbox

    failures, sent = [], []
    box = Outbox(failures.append)
    for i in range(5):
        box.put(lambda i=i: sent.append(i))
    assert box.wait(10) and sent == [0, 1, 2, 3, 4]
    broken = box.put(lambda: 1 / 0)
    after = box.put(lambda: sent.append("late"))
    assert box.wait(10)
    assert isinstance(broken.exception(timeout=10), ZeroDivisionError) and after.cancelled()
    assert box.put(lambda: sent.append("later")).cancelled() and "late" not in sent and len(failures) == 1
    slow = Outbox(failures.append)
    release = threading.Event()
    slow.put(release.wait)
    assert not slow.close(0.2)  # still busy: the caller learns it, and is not held up
    release.set()


def test_the_mlflow_sender_is_a_process_that_answers_in_order_yields_the_cpu_and_ends_with_its_run(tmp_path):
    """MLflow runs beside training in a process of its own: a failed request is one line back, not the end of it;
    after the set-up it takes the lowest CPU priority (the run's own is unchanged); closing its input ends it."""
    from mlflow import MlflowClient
    from edgedistill.mlflow_sender import Sender

    sender = Sender()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = sender.call("connect", uri=uri, experiment="e")
    with pytest.raises(RuntimeError, match="nope"):
        sender.call("update_run", run_id="nope", status="RUNNING")
    run_id = sender.call("create_run", experiment_id=experiment, run_name="r", tags={"a": "b"})
    sender.call("log_batch", run_id=run_id, metrics=[["m", float(i), 0, i] for i in range(1500)], params={"p": "1"},
                tags={})
    assert sender.call("logged_steps", run_id=run_id, key="m") == list(range(1500))
    if sys.platform.startswith("linux"):
        own = os.getpriority(os.PRIO_PROCESS, 0)
        sender.call("lower_priority")
        assert os.getpriority(os.PRIO_PROCESS, sender.proc.pid) == 19 and os.getpriority(os.PRIO_PROCESS, 0) == own
    sender.close()
    assert sender.proc.wait(300) == 0  # at nice 19 it waits out every busy process on the machine
    with pytest.raises(RuntimeError, match="ended"):
        sender.call("lower_priority")
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.params == {"p": "1"} and run.data.tags["a"] == "b"


def test_config_params_are_the_resolved_config_flattened():
    from edgedistill.config import resolve_config
    from edgedistill.tracking import config_params

    params = config_params(resolve_config(tiny_config(student_args={"channels": [8, 16]})))
    assert params["student.train.epochs"] == 1 and params["distill.method"] == "kd"
    assert params["student.args.channels"] == "[8, 16]" and params["tracking.backends"] == "[]"
    assert params["teacher.checkpoint"] == "null" and params["teacher.args"] == "{}"


def test_tracking_config_is_checked_and_off_by_default():
    from edgedistill.config import resolve_config
    from edgedistill.errors import UserError

    assert resolve_config(tiny_config()).tracking.backends == []
    assert resolve_config(tiny_config(), ["tracking.backends=mlflow"]).tracking.backends == ["mlflow"]
    with pytest.raises(UserError, match="tracking.backends"):
        resolve_config(tiny_config(), ["tracking.backends=[wandb]"])


def test_a_failed_start_is_discarded_with_its_tracking_files(tmp_path):
    from edgedistill.pipeline.rundir import RUN_MARKER, discard_unstarted

    for name in (RUN_MARKER, "config.yaml", "tracking.json", "tensorboard/run/events.out.tfevents.1"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert discard_unstarted(tmp_path) and not tmp_path.exists()


def remake_screenshot(png: Path = TESTS.parent / "docs" / "mlflow_run_page.png") -> None:
    """The README's picture: the packaged demo config, shortened, --seeds 2 against a real server; seed 0's page."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp, mlflow_server(Path(tmp) / "server") as url:
        subprocess.run([sys.executable, "-m", "edgedistill", "run", "--seeds", "2", "--out", "demo", "--quiet",
                        "--track", "mlflow", "--set", "teacher.train.epochs=3", "--set", "student.train.epochs=6"],
                       cwd=tmp, env={**os.environ, "MLFLOW_TRACKING_URI": url}, check=True, timeout=3600)
        saved = json.loads((Path(tmp) / "demo" / "seed_0" / "tracking.json").read_text())
        child = MlflowClient(tracking_uri=url).get_run(saved["mlflow"]["run_id"])
        screenshot_run_page(url, child, png, size=(1400, 1100))
    print(f"wrote {png}")


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))
    remake_screenshot()


def test_a_relative_mlflow_store_is_saved_absolute_so_a_resume_elsewhere_finds_it(tmp_path, monkeypatch):
    """tracking.json kept `file:./mlruns` as given, so a --resume from another folder opened a new store there and
    left the run RUNNING in the first; the store is now saved as the absolute place the run started in."""
    from mlflow import MlflowClient

    started = tmp_path / "project"
    started.mkdir()
    out = tmp_path / "run"
    proc = run_cli("run", str(write_yaml(tmp_path / "exp.yaml", tiny_config())), "--out", str(out), "--quiet",
                   "--track", "mlflow", "--set", "tracking.uri=file:./mlruns", cwd=started,
                   env_extra={"MLFLOW_ALLOW_FILE_STORE": "true"})
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((out / "tracking.json").read_text())["mlflow"]
    assert saved["uri"] == (started / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only when the user allows it
    assert MlflowClient(tracking_uri=saved["uri"]).get_run(saved["run_id"]).info.status == "FINISHED"


@pytest.mark.parametrize("given,expected", [
    ("file:./mlruns", "file://{cwd}/mlruns"), ("file:mlruns", "file://{cwd}/mlruns"), ("mlruns", "{cwd}/mlruns"),
    ("./store/mlruns", "{cwd}/store/mlruns"), ("sqlite:///runs.db", "sqlite:///{cwd}/runs.db"),
    ("file:///srv/mlruns", "file:///srv/mlruns"), ("/srv/mlruns", "/srv/mlruns"),
    ("sqlite:////srv/r.db", "sqlite:////srv/r.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"), ("databricks", "databricks"),
    ("postgresql://u@db/mlflow", "postgresql://u@db/mlflow")])
def test_a_relative_tracking_uri_is_made_absolute_from_where_the_run_starts(tmp_path, monkeypatch, given, expected):
    """From tracking.uri or MLFLOW_TRACKING_URI alike; a server, a database or a named store is left as it is."""
    from edgedistill.config import TrackingConfig
    from edgedistill.tracking.mlflow import tracking_uri

    monkeypatch.chdir(tmp_path)
    want = expected.format(cwd=tmp_path.resolve())
    assert tracking_uri(TrackingConfig(backends=["mlflow"], uri=given), {}) == want
    monkeypatch.setenv("MLFLOW_TRACKING_URI", given)
    assert tracking_uri(TrackingConfig(backends=["mlflow"]), {}) == want


def test_a_damaged_tracking_json_is_read_as_no_tracked_run(tmp_path):
    """--resume continues the tracked run tracking.json names; one edited by hand starts a new tracked run instead of
    an AttributeError in the MLflow backend."""
    from edgedistill.tracking import SAVED, saved_tracking

    for damaged, kept in (("[]", {}), ('{"mlflow": "run-1"}', {}), ("{", {}),
                          ('{"mlflow": {"run_id": "abc"}}', {"mlflow": {"run_id": "abc"}})):
        (tmp_path / SAVED).write_text(damaged)
        assert saved_tracking(tmp_path) == kept

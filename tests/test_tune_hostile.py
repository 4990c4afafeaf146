"""What a hostile user of `edgedistill tune` broke (audit of 2026-12-07): an interrupted trial that was never run
again, a folder whose study was deleted handing its old trials and test table to a new study, a trials-only rerun
that dropped the test table from the report, a password in a URL's query printed, and an --out folder made before
the study refused the worker."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error, write_config
from test_reliability import cli_env
from test_tune_inputs import listing

from edgedistill.cli.tune.storage import redacted, scrub


def study_config(tmp_path: Path, epochs: int = 1) -> Path:
    cfg = tiny_config(limit_train=100)
    cfg["student"]["train"] |= {"epochs": epochs, "max_steps_per_epoch": 2}
    return write_config(tmp_path, cfg)


def tune(cfg: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("tune", str(cfg), "--out", str(out), "--quiet", "--methods", "kd", "--mix", "none", *args)


def test_a_password_in_the_url_query_or_with_an_unencoded_at_is_never_shown():
    assert redacted("postgresql://h:5432/db?user=u&password=tune-secret") == "postgresql://h:5432/db?user=u&password=***"
    assert redacted("postgresql://alice:p@ss:w/rd@127.0.0.1:5999/db") == "postgresql://alice:***@127.0.0.1:5999/db"
    assert redacted("postgresql://h:5432/db?user=a@corp.com") == "postgresql://h:5432/db?user=a@corp.com"
    assert "tune-secret" not in scrub("FATAL: bad password tune-secret", "postgresql://h/db?PASSWORD=tune-secret")


def test_a_refused_password_in_the_query_stays_hidden_on_stderr(tmp_path):
    url = "postgresql://127.0.0.1:1/db?user=alice&password=S3cretPW"
    proc = tune(study_config(tmp_path), tmp_path / "s", "--storage", url, "--trials", "1", "--seeds", "0")
    assert_one_line_error(proc, "--storage postgresql://127.0.0.1:1/db?user=alice&password=***")
    assert "S3cretPW" not in proc.stderr
    assert not (tmp_path / "s").exists()


def test_a_folder_whose_study_db_is_gone_is_refused_and_kept(tmp_path):
    cfg, out = study_config(tmp_path), tmp_path / "s"
    assert tune(cfg, out, "--trials", "1", "--seeds", "0").returncode == 0
    (out / "study.db").unlink()
    before = listing(out)
    proc = tune(cfg, out, "--trials", "1", "--seeds", "0")
    assert_one_line_error(proc, f"--out {out}: holds trials of study", "but not its study.db")
    assert listing(out) == before


def test_a_folder_of_a_study_made_again_in_its_database_is_refused(tmp_path):
    """A study deleted from a shared database and made again under its name starts its trials at 0 again."""
    import optuna

    cfg, db = study_config(tmp_path), tmp_path / "shared.db"
    url = f"sqlite:///{db}"
    assert tune(cfg, tmp_path / "a", "--storage", url, "--trials", "1", "--seeds", "0").returncode == 0
    optuna.delete_study(study_name="tiny-mnist1d-resnet-convnet", storage=url)
    assert tune(cfg, tmp_path / "b", "--storage", url, "--trials", "1", "--seeds", "0").returncode == 0  # made again
    before = listing(tmp_path / "a")
    proc = tune(cfg, tmp_path / "a", "--storage", url, "--trials", "1", "--seeds", "0")
    assert_one_line_error(proc, "holds the trials of an earlier study", "choose another --out")
    assert listing(tmp_path / "a") == before


def test_a_worker_refused_by_a_shared_study_makes_no_folder(tmp_path):
    cfg, url = study_config(tmp_path), f"sqlite:///{tmp_path / 'shared.db'}"
    assert tune(cfg, tmp_path / "a", "--storage", url, "--trials", "1", "--seeds", "0").returncode == 0
    proc = run_cli("tune", str(cfg), "--out", str(tmp_path / "b"), "--quiet", "--storage", url, "--trials", "1",
                   "--seeds", "0", "--methods", "kd,dist", "--mix", "none")
    assert_one_line_error(proc, "the study was started with another search space")
    assert not (tmp_path / "b").exists()


def test_a_trials_only_rerun_keeps_the_test_table_in_the_report(tmp_path):
    cfg, out = study_config(tmp_path), tmp_path / "s"
    assert tune(cfg, out, "--trials", "1", "--seeds", "2").returncode == 0
    table = json.loads((out / "tune.json").read_text())["confirm"]["table"]
    assert tune(cfg, out, "--trials", "1", "--seeds", "0").returncode == 0
    summary = json.loads((out / "tune.json").read_text())
    assert summary["confirm"]["table"] == table and summary["confirm"]["trial"] == summary["best"]["number"]
    assert "against scratch over 2 seeds (test split)" in (out / "tune.md").read_text()
    marker = (out / "confirm.json").read_text()
    for damaged in ((out / "confirm.json", "[]"), (out / "confirm" / "seeds.json", '{"seeds": [1]}')):
        kept = damaged[0].read_text()
        damaged[0].write_text(damaged[1])  # which recipe confirm/ ran, or what it scored, is unknown: not shown
        proc = tune(cfg, out, "--trials", "1", "--seeds", "0")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert json.loads((out / "tune.json").read_text())["confirm"] is None
        damaged[0].write_text(kept)
    assert (out / "confirm.json").read_text() == marker
    (out / "confirm.json").write_text("[]")
    proc = tune(cfg, out, "--trials", "1", "--seeds", "2")  # the seeds run again, and say why
    assert proc.returncode == 0 and "confirm.json or" in proc.stderr and "is damaged" in proc.stderr, proc.stderr
    assert json.loads((out / "confirm.json").read_text()) == json.loads(marker)


def as_at_a_terminal() -> None:
    """Ctrl-C reaches the child: a test runner's worker may ignore or block SIGINT, and a child inherits both."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_a_trial_stopped_by_ctrl_c_is_run_again_from_its_checkpoint(tmp_path):
    cfg, out = study_config(tmp_path, epochs=40), tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill", "tune", str(cfg), "--out", str(out), "--quiet",
                             "--methods", "kd", "--mix", "none", "--trials", "1", "--seeds", "0"],
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_at_a_terminal)
    log = out / "trials" / "0000" / "logs" / "student_kd.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and not (log.is_file() and log.read_text().count("\n")):
        time.sleep(0.01)
    assert proc.poll() is None, f"the trial ended before it could be interrupted: {proc.stderr.read()}"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stderr.read()
    stopped = json.loads((out / "tune.json").read_text()) if (out / "tune.json").exists() else None
    assert stopped is None or stopped["states"].get("complete", 0) == 0

    assert tune(cfg, out, "--trials", "1", "--seeds", "0").returncode == 0
    rows = json.loads((out / "tune.json").read_text())["trials"]
    assert [(r["number"], r["state"]) for r in rows] == [(0, "fail"), (1, "complete")]
    assert rows[0]["note"] == "the config's own recipe; its worker stopped (Ctrl-C, or no heartbeat)"
    assert rows[1]["note"] == "the config's own recipe; retry of #0"
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert epochs == list(range(1, 41))  # resumed in trial 0's folder: each epoch once


def test_damaged_markers_and_empty_lists_are_one_line_errors(tmp_path):
    cfg = study_config(tmp_path)
    for i, text in enumerate(["[]", "{}", "not json"]):
        out = tmp_path / f"m{i}"
        out.mkdir()
        (out / ".edgedistill-tune").write_text(text)
        assert_one_line_error(tune(cfg, out, "--trials", "1"), f"--out {out}: its .edgedistill-tune is damaged")
    proc = run_cli("tune", str(cfg), "--out", str(tmp_path / "e"), "--methods", ",", "--quiet")
    assert_one_line_error(proc, "--methods ',': names nothing")
    proc = run_cli("tune", str(cfg), "--out", str(tmp_path / "e"), "--storage", "", "--quiet")
    assert_one_line_error(proc, "--storage: is empty")
    assert_one_line_error(run_cli("tune", str(tmp_path), "--quiet"), "is a folder; pass the YAML file in it")
    assert not (tmp_path / "e").exists()


def test_a_test_table_of_another_trial_than_the_best_says_so():
    """Trials added after the seeds ran may change the best; the report keeps the table and says whose it is."""
    from edgedistill.cli.tune.report import tune_markdown

    best = {"number": 4, "method": "dist", "settings": {}, "val_accuracy": 0.9}
    summary = {"study": "s", "storage": "study.db in this folder", "trials_asked": 5, "epochs_per_trial": 1,
               "states": {"complete": 5}, "space": {}, "excluded": {}, "trials": [], "best": best,
               "confirm": {"trial": 2, "seeds": 2, "folder": "confirm", "table": "| table |",
                           "summary": {"seeds": [0, 1]}}}
    assert "These seeds ran trial 2, the study's choice when they ran; its best is now trial 4" in tune_markdown(summary)
    summary["confirm"]["trial"] = 4
    assert "These seeds ran" not in tune_markdown(summary)

"""report.html from metrics.json alone, checked in a real headless Chromium; `report` and `compare` commands."""
import re
import shutil
import subprocess

import pytest

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error, write_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium absent: apt-get install chromium")


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", *args], capture_output=True, text=True, timeout=120)


def test_run_writes_self_contained_html(deployed_run):
    out, _ = deployed_run
    page = (out / "report.html").read_text()
    assert "<img" in page and 'src="http' not in page and "<link" not in page  # nothing fetched from elsewhere
    for heading in ("Comparison (test set)", "Deployment", "Trade-offs", "Training", "Where the student errs"):
        assert heading in page
    assert "KD student as tflm-int8 fits" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 5


@needs_chromium
def test_report_renders_in_chromium_without_errors(deployed_run, tmp_path):
    out, _ = deployed_run
    url = (out / "report.html").as_uri()
    dom = chromium("--dump-dom", url)
    assert 'data-images-ok="true"' in dom.stdout, "an embedded chart failed to decode"
    assert 'data-image-count="5"' in dom.stdout
    console = [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    shot = tmp_path / "report.png"
    chromium("--window-size=1200,3000", f"--screenshot={shot}", url)
    assert shot.stat().st_size > 20_000


def test_report_command_rebuilds_from_metrics(deployed_run, tmp_path):
    out, _ = deployed_run
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(out / "metrics.json", copy / "metrics.json")
    proc = run_cli("report", str(copy))
    assert proc.returncode == 0, proc.stderr
    assert (copy / "report.html").is_file() and (copy / "report.md").is_file()
    assert (copy / "report.md").read_text() == (out / "report.md").read_text()


def test_compare_two_runs_that_differ_only_in_method(deployed_run, tmp_path, tiny):
    import edgedistill

    out, _ = deployed_run
    other = tmp_path / "run_dkd"
    cfg = tiny()
    cfg["distill"]["method"] = "dkd"
    edgedistill.run(cfg, out_dir=other, progress=False)
    proc = run_cli("compare", str(out), str(other), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "kd (T=4.0, alpha=0.9)" in table and "dkd (T=4.0, alpha=1.0, beta=8.0" in table and "run_dkd" in table
    assert (tmp_path / "cmp" / "report.html").read_text().count("<img") >= 4


def test_report_of_a_folder_without_metrics_or_with_a_damaged_one(tmp_path):
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "no metrics.json" in proc.stderr and "Traceback" not in proc.stderr
    for damaged, said in (("", "not valid JSON"), ("[]", "holds list, not a metrics object"),
                          ("{}", "missing key 'schema_version'"), (None, "is a folder, not a run's record")):
        target = tmp_path / "metrics.json"
        if target.is_file():
            target.unlink()
        if damaged is None:
            target.mkdir()
        else:
            target.write_text(damaged)
        proc = run_cli("report", str(tmp_path))
        assert_one_line_error(proc, said, "rerun the experiment")


def test_a_teacher_under_the_scratch_student_is_named_as_the_likely_reason_kd_lost(tmp_path):
    """A teacher that barely trained (lr 1e-7) against a student that did, on scikit-learn's digits: the run says,
    under the KD gain it explains and in both reports, that the teacher scores under the scratch student on
    validation."""
    cfg = tiny_config(dataset="digits", teacher="user_models:tiny_linear", student="mlp")
    cfg["data"] |= {"limit_train": None, "limit_test": None}
    cfg["teacher"]["train"]["lr"] = 1e-7
    cfg["student"]["train"] |= {"epochs": 3, "max_steps_per_epoch": None}
    out = tmp_path / "run"
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--quiet")
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    lines = proc.stdout.splitlines()
    gain = next(i for i, ln in enumerate(lines) if ln.startswith("KD gain over scratch: "))
    sentence = lines[gain + 1]
    assert sentence.startswith("The teacher scores ") and "under the student trained from scratch" in sentence
    assert "Train the teacher longer (teacher.train)" in sentence
    assert sentence in (out / "report.md").read_text()
    assert sentence.replace("'", "&#x27;") in (out / "report.html").read_text()


def test_weak_teacher_speaks_only_when_the_teacher_is_under_the_scratch_student():
    from edgedistill.report.markdown import weak_teacher

    def metrics(teacher: float, scratch: float, pool: int = 0) -> dict:
        return {"dataset": {"n_unlabeled": pool},
                "models": {"teacher": {"val": {"accuracy": teacher}}, "student_scratch": {"val": {"accuracy": scratch}}}}

    assert weak_teacher(metrics(0.9, 0.8)) == "" and weak_teacher(metrics(0.8, 0.8)) == ""
    assert weak_teacher({"dataset": {}, "models": {"teacher": {}, "student_scratch": {}}}) == ""  # an older record
    said = weak_teacher(metrics(0.5, 0.625))
    assert said.startswith("The teacher scores 50.00% on validation, 12.50 points under the student trained from "
                           "scratch (62.50%)") and "pseudo_label" not in said
    assert "let it learn from the unlabelled pool (teacher.train.pseudo_label)" in weak_teacher(metrics(0.5, 0.6, 10))

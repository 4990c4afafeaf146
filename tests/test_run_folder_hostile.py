"""What a hostile user did to run folders (2026-12-07 audit), through the CLI as they met it: a failed --overwrite
that had already deleted the old run, --resume over a folder edgedistill never made, and a resume under an edited
config.yaml that mixed two runs."""
from __future__ import annotations

import yaml

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error, write_config
from test_hostile import TINY_DEVICE, deployed, user_files


def kept(folder) -> dict[str, bytes]:
    """The folder's files but its lock, which each command that holds the folder rewrites."""
    return {name: data for name, data in user_files(folder).items() if name != ".edgedistill-lock"}


def finished_run(tmp_path, cfg: dict | None = None):
    out = tmp_path / "run"
    proc = run_cli("run", str(write_config(tmp_path, cfg or tiny_config())), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_wrong_tap_name_stops_before_overwrite_deletes_the_old_run(tmp_path):
    out = finished_run(tmp_path)
    before = kept(out)
    cfg = tiny_config()
    cfg["distill"] = {"method": ["kd", "fitnets"], "teacher_taps": ["bodyy"]}
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--overwrite", "--quiet")
    assert_one_line_error(proc, "distill.teacher_taps: the teacher has no module 'bodyy'")
    assert kept(out) == before  # the finished run is whole, and no teacher was trained over it
    cfg["distill"] = {"method": ["kd", "fitnets"], "student_taps": ["nope"]}
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "new"), "--quiet")
    assert_one_line_error(proc, "distill.student_taps: the student has no module 'nope'")
    assert not (tmp_path / "new").exists()


def test_a_student_search_that_finds_nothing_stops_before_overwrite_deletes_the_old_run(tmp_path):
    out = finished_run(tmp_path)
    before = kept(out)
    catalog = tmp_path / "devices.yaml"
    catalog.write_text(yaml.safe_dump(TINY_DEVICE))
    cfg = deployed(tiny_config(), "tiny_mcu") | {"device_catalog": str(catalog)}
    cfg["student"] |= {"model": "auto", "args": {}, "search": {"family": "mlp", "trials": 2, "epochs": 1}}
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--overwrite", "--quiet")
    assert_one_line_error(proc, "student: auto found no mlp that fits device 'tiny_mcu' in 2 trials")
    assert kept(out) == before


def test_resume_refuses_a_folder_edgedistill_did_not_make_and_leaves_it_untouched(tmp_path):
    mine = tmp_path / "project"
    (mine / "export").mkdir(parents=True)
    (mine / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    (mine / "report.md").write_text("my own notes\n")
    (mine / "export" / "student_kd_fp32.onnx").write_text("my own model\n")
    before = user_files(mine)
    proc = run_cli("run", "--resume", str(mine), "--quiet")
    assert_one_line_error(proc, f"--resume {mine}: holds a config.yaml but is not a run edgedistill made")
    assert user_files(mine) == before and sorted(p.name for p in mine.iterdir()) == ["config.yaml", "export",
                                                                                      "report.md"]  # no lock left


def test_resume_under_an_edited_config_is_refused_and_the_restored_one_resumes(tmp_path):
    out = finished_run(tmp_path)
    (out / "metrics.json").unlink()  # unfinished: the models are made, the run's end is not
    written = (out / "config.yaml").read_text()
    edited = yaml.safe_load(written)
    edited["student"]["train"]["epochs"] += 3
    (out / "config.yaml").write_text(yaml.safe_dump(edited))
    proc = run_cli("run", "--resume", str(out), "--quiet")
    assert_one_line_error(proc, f"--resume {out}: config.yaml was edited since the run started")
    assert not (out / "metrics.json").exists()
    (out / "config.yaml").write_text(written)
    proc = run_cli("run", "--resume", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (out / "metrics.json").is_file()

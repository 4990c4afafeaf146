"""What a hostile user did to run folders (2026-12-07 audit), through the CLI as they met it: a failed --overwrite
that had already deleted the old run, --resume over a folder edgedistill never made, and a resume under an edited
config.yaml that mixed two runs, and a killed --seeds run that could never be finished."""
from __future__ import annotations

import json

import yaml

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error, write_config
from test_hostile import TINY_DEVICE, deployed, user_files
from test_reliability import digits_config, kill_when, start


def kept(folder) -> dict[str, bytes]:
    """The folder's files but its lock, which each command that holds the folder rewrites."""
    return {name: data for name, data in user_files(folder).items() if name != ".edgedistill-lock"}


def scores(run_dir) -> dict:
    """Each model's test scores and validation curve (a loaded teacher has none)."""
    m = json.loads((run_dir / "metrics.json").read_text())
    return {role: (r["test"]["accuracy"], r["test"]["f1_macro"],
                   [h["val_accuracy"] for h in (r.get("train") or {}).get("history", [])])
            for role, r in m["models"].items()}


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


def test_a_killed_seeds_run_resumes_whole_and_ends_like_an_uninterrupted_one(tmp_path):
    """--resume on a --seeds folder reads back the finished seeds, continues the killed one and runs the rest, then
    writes the summary; before, the seeds after the killed one and seeds.md could never be made."""
    cfg_file = write_config(tmp_path, digits_config())
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_cli("run", str(cfg_file), "--out", str(whole), "--seeds", "3", "--quiet",
                   env_extra={"OMP_NUM_THREADS": "1"}).returncode == 0
    proc = start("run", str(cfg_file), "--out", str(killed), "--seeds", "3", "--quiet")
    kill_when(proc, (killed / "seed_1" / "state" / "student_scratch.pt").exists)  # the second seed, one epoch in
    assert not (killed / "seed_2").exists() and not (killed / "seeds.md").exists()
    assert_one_line_error(run_cli("run", "--resume", str(killed), "--seeds", "3"), f"--resume {killed}", "drop --seeds")
    record = killed / "inputs.json"
    plan = record.read_text()
    for damaged, said in ((plan.replace('"n": 3', '"n": 0', 1), "seeds.n: Input should be greater than or equal to 2"),
                          (plan.replace('"seed": 0', '"seed": -1', 1), "inputs.json (seeds.config): key 'seed'")):
        assert damaged != plan
        record.write_text(damaged)
        assert_one_line_error(run_cli("run", "--resume", str(killed), "--quiet"), f"--resume {killed}", said)
    record.write_text(plan)
    finished = killed / "seed_0" / "metrics.json"
    kept = finished.read_bytes()
    finished.write_text('{"schema_version": 1}')  # a finished seed's record edited by hand
    assert_one_line_error(run_cli("run", "--resume", str(killed), "--quiet"), str(finished))
    finished.write_bytes(kept)
    resumed = run_cli("run", "--resume", str(killed), "--quiet", env_extra={"OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert "summary: " in resumed.stdout
    for seed in ("seed_0", "seed_1", "seed_2"):
        assert scores(killed / seed) == scores(whole / seed), seed
    summary = json.loads((killed / "seeds.json").read_text())
    assert summary == json.loads((whole / "seeds.json").read_text())
    assert_one_line_error(run_cli("run", "--resume", str(killed)), "those seeds have finished")


def searched(cfg: dict) -> dict:
    cfg["student"] |= {"model": "auto", "args": {}, "search": {"family": "mlp", "trials": 2, "epochs": 1}}
    return cfg


def test_a_killed_searched_run_resumes_its_chosen_student_and_a_damaged_choice_is_one_line(tmp_path):
    """student: auto keeps its choice in student_search.json so that --resume does not search again; a damaged one
    is refused, since another search could choose another student than the one its training state holds."""
    out = tmp_path / "killed"
    proc = start("run", str(write_config(tmp_path, searched(digits_config()))), "--out", str(out), "--quiet")
    kill_when(proc, (out / "state" / "student_scratch.pt").exists)
    choice = out / "student_search.json"
    chosen = choice.read_bytes()
    kept_keys = {k: v for k, v in json.loads(chosen).items() if k in ("family", "args")}
    for damaged, where in (('{"family": "mlp"}', "at args"), (json.dumps(kept_keys), "at best_trial"),
                           ("[]", "top level")):  # the report reads best_trial, trials and budget too
        choice.write_text(damaged)
        assert_one_line_error(run_cli("run", "--resume", str(out), "--quiet"),
                              f"--resume {out}: {choice} is unreadable or damaged", where, "start a new run")
    assert not (out / "metrics.json").exists()
    choice.write_bytes(chosen)
    state = out / "state" / "student_scratch.pt"
    trained = state.read_bytes()
    for damaged in (b"{}", b"\x80\x02}q\x00.", b""):  # text, a bare pickle, emptied
        state.write_bytes(damaged)
        proc = run_cli("run", "--resume", str(out), "--quiet")
        assert_one_line_error(proc, f"--resume: {state}", "remove it to restart that model")
        assert "weights_only" not in proc.stderr  # torch's advice to load it unsafely is never passed on
    state.write_bytes(trained)
    resumed = run_cli("run", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    models = json.loads((out / "metrics.json").read_text())["models"]
    assert models["student_kd"]["args"] == models["student_scratch"]["args"] == json.loads(chosen)["args"]


def test_student_auto_meets_the_folders_refusal_before_it_searches_and_its_taps_before_the_folder(tmp_path):
    """A search can take minutes: a finished run in --out without --overwrite is refused before it, and the chosen
    student's feature taps are set up after it but before --overwrite touches the old run."""
    out = finished_run(tmp_path)
    before = kept(out)
    proc = run_cli("run", str(write_config(tmp_path, searched(tiny_config()))), "--out", str(out), "--quiet")
    assert_one_line_error(proc, f"--out {out}: holds a finished run; pass --overwrite")  # no "auto chose" line first
    cfg = searched(tiny_config())
    cfg["distill"] = {"method": ["kd", "fitnets"], "student_taps": ["nope"]}
    proc = run_cli("run", str(write_config(tmp_path, cfg)), "--out", str(out), "--overwrite", "--quiet")
    last = proc.stderr.splitlines()[-1]  # after the search's "auto chose" warning
    assert proc.returncode == 2 and "distill.student_taps: the student has no module 'nope'" in last, proc.stderr
    assert kept(out) == before

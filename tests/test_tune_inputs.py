"""Issue 30's protections on `edgedistill tune`: its numbers are checked before the study starts (not after its
trials, when the best recipe runs over --seeds), and a study folder, which its workers share, is never taken for a
run by `run --resume` or `run --out ... --overwrite`."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error, write_config


def study_config(tmp_path: Path) -> Path:
    cfg = tiny_config(limit_train=100)
    cfg["student"]["train"] |= {"epochs": 1, "max_steps_per_epoch": 2}
    return write_config(tmp_path, cfg)


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under the folder with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args, fragment", [
    (("--seeds", "1001"), "--seeds 1001: at most 1000"),
    (("--seeds", "2", "--set", "seed=4294967295"), "pass 4294967295, the largest seed"),
    (("--timeout", "nan"), "--timeout nan: give a number of seconds above 0"),
    (("--heartbeat", "10000000000"), "--heartbeat 10000000000: give 1 to 86400 seconds"),
])
def test_tune_numbers_are_checked_before_the_study_starts(tmp_path, args, fragment):
    proc = run_cli("tune", str(study_config(tmp_path)), "--out", str(tmp_path / "s"), "--trials", "1", "--quiet",
                   *args)
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "s").exists()


def test_a_study_folder_is_not_resumed_or_overwritten_as_a_run(tmp_path):
    cfg, study = study_config(tmp_path), tmp_path / "study"
    made = run_cli("tune", str(cfg), "--out", str(study), "--trials", "1", "--seeds", "0", "--quiet",
                   "--methods", "kd")
    assert made.returncode == 0, made.stderr
    before = listing(study)
    proc = run_cli("run", "--resume", str(study), "--quiet")
    assert_one_line_error(proc, f"--resume {study}: is an `edgedistill tune` study, not a run",
                          f"--out {study} again")
    proc = run_cli("run", str(cfg), "--out", str(study), "--overwrite", "--quiet")
    assert_one_line_error(proc, f"--out {study}: holds files that are not an edgedistill run")
    assert listing(study) == before  # not a lock file, a checkpoint or a log more

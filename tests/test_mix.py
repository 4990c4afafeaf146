"""Mixup and CutMix on the batch both students and the live teacher see (distill.mix), worked by hand, refused where
they cannot work, and resumed mid-run along the same stream of draws."""
import json

import pytest
import torch
import yaml

from conftest import run_cli, tiny_config
from test_cli import assert_one_line_error
from test_reliability import digits_config, kill_when, scores, start
from edgedistill.train.mix import Mix, Mixer, cut_box


def test_mixup_blends_inputs_and_label_mass_by_one_share_and_permutation():
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0], [0.0, 10.0]])
    mix = Mix(torch.tensor([1, 2, 0]), 0.75)
    assert torch.allclose(mix.inputs(x), torch.tensor([[1.5, 2.75], [2.25, 6.25], [0.25, 8.0]]))
    mass = mix.targets(torch.tensor([0, -1, 2]), 3)  # the middle row has no label
    assert torch.allclose(mass, torch.tensor([[0.75, 0.0, 0.0], [0.0, 0.0, 0.25], [0.25, 0.0, 0.75]]))


def test_cutmix_pastes_a_box_and_counts_what_it_kept():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    mix = Mix(torch.tensor([1, 0]), 0.75, (slice(0, 2), slice(1, 3)))
    out = mix.inputs(x)
    assert torch.equal(out[0, 0, :2, 1:3], x[1, 0, :2, 1:3]) and torch.equal(out[0, 0, 2:], x[0, 0, 2:])
    assert torch.equal(out[1, 0, :2, 1:3], x[0, 0, :2, 1:3])
    gen = torch.Generator().manual_seed(0)
    for size in ((28, 28), (40,)):
        box, kept = cut_box(size, 0.6, gen)
        area = 1.0
        for s, n in zip(box, size):
            area *= (s.stop - s.start) / n
        assert kept == pytest.approx(1 - area) and 0.0 <= kept <= 1.0


def test_every_draw_comes_from_the_trainers_generator():
    before = torch.get_rng_state()
    a = [Mixer("cutmix", 1.0).draw((8, 1, 40), torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), before), "the global RNG was drawn from"
    assert torch.equal(a[0].perm, a[1].perm) and a[0].lam == a[1].lam and a[0].box == a[1].box
    lams = [Mixer("mixup", 0.2).draw((4, 2), torch.Generator().manual_seed(s)).lam for s in range(200)]
    assert sum(lam < 0.1 or lam > 0.9 for lam in lams) > 100  # Beta(0.2, 0.2) piles up at the ends


def test_mixing_is_refused_where_it_cannot_work(tmp_path):
    cfg = tiny_config()
    cfg["distill"]["mix"] = {"kind": "mixup"}
    cfg["distill"]["cache"] = {"enabled": True}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, "mix.kind 'mixup' needs the teacher's outputs on every mixed batch",
                          "distill.cache.enabled: false")
    table = tiny_config("breast_cancer", "mlp", "mlp")
    table["data"].pop("limit_train"), table["data"].pop("limit_test")
    table["distill"]["mix"] = {"kind": "cutmix"}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(table))
    proc = run_cli("run", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, "distill.mix.kind: cutmix pastes a box", "shape (30,); use mixup")
    assert not (tmp_path / "run").exists()


def test_a_killed_mixed_run_resumes_along_the_same_stream_of_mixes(tmp_path):
    cfg = digits_config()
    cfg["data"]["labeled_fraction"] = 0.5  # the KD student mixes labelled rows with the pool
    cfg["distill"]["mix"] = {"kind": "cutmix", "alpha": 1.0}
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_cli("run", str(cfg_file), "--out", str(whole), "--quiet",
                   env_extra={"OMP_NUM_THREADS": "1"}).returncode == 0
    proc = start("run", str(cfg_file), "--out", str(killed), "--quiet")
    kill_when(proc, (killed / "state" / "student_kd.pt").exists)  # after the KD student's first epoch
    resumed = run_cli("run", "--resume", str(killed), "--quiet", env_extra={"OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert scores(killed) == scores(whole)
    kd = [json.loads(line) for line in (killed / "logs" / "student_kd.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in kd] == list(range(1, 7)) and kd[-1]["rows_unlabeled"] > 0


def test_tune_draws_the_mix_as_one_recipe_knob_where_the_method_and_data_allow():
    from edgedistill.cli.tune.space import MIX, RECIPE_SPACE, SearchSpace, recipe_config, recipe_space
    from edgedistill.config import validate_config

    assert MIX in RECIPE_SPACE
    space = SearchSpace(("kd", "nkd", "crd", "mvkd"), {})
    assert [m for m, dims in space.describe().items() if "distill.mix.kind" in dims] == ["kd", "nkd"]
    assert recipe_space(token_ids=True, flat=False) == ()
    assert recipe_space(token_ids=False, flat=True)[0].choices == ("none", "mixup")
    assert recipe_space(token_ids=False, flat=False)[0].choices == ("none", "mixup", "cutmix")
    cfg = tiny_config()
    cfg["distill"]["cache"] = {"enabled": True, "views": 2}
    base = validate_config(cfg).model_dump(mode="json")
    mixed = validate_config(recipe_config(base, "kd", {"distill.mix.kind": "cutmix"}))
    assert mixed.distill.mix.kind == "cutmix" and not mixed.distill.cache.enabled  # the teacher runs live
    assert validate_config(recipe_config(base, "kd", {"distill.mix.kind": "none"})).distill.cache.enabled


def test_a_tune_trial_that_draws_mixup_trains_with_the_pool_and_a_live_teacher(tmp_path):
    """The study's first trial is whatever the sampler draws; the second is put in the queue with mixup, from a
    config whose cache is on and whose training split keeps half its labels."""
    import optuna

    cfg = tiny_config(limit_train=200, labeled_fraction=0.5)
    cfg["student"]["train"] |= {"epochs": 2, "max_steps_per_epoch": 4}
    cfg["distill"]["cache"] = {"enabled": True, "views": 2}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "study"
    args = ("tune", str(tmp_path / "exp.yaml"), "--out", str(out), "--seeds", "0", "--methods", "kd", "--quiet")
    assert run_cli(*args, "--trials", "1").returncode == 0
    url = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name=cfg["name"], storage=url)
    assert "distill.mix.kind" in study.user_attrs["space"]["kd"]
    study.enqueue_trial({"method": "kd", "kd/distill.temperature": 2.0, "kd/distill.alpha": 0.5,
                         "distill.mix.kind": "mixup"})
    proc = run_cli(*args, "--trials", "2")
    assert proc.returncode == 0, proc.stderr
    trial = optuna.load_study(study_name=cfg["name"], storage=url).trials[1]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["settings"]["distill.mix.kind"] == \
        "mixup"
    for number in (0, 1):
        rows = [json.loads(line) for line in (out / "trials" / f"{number:04d}" / "logs" / "student_kd.jsonl")
                .read_text().splitlines()]
        assert rows and all(r["rows_unlabeled"] > 0 and r["rows_labeled"] > 0 for r in rows)


def test_the_reports_say_both_students_trained_on_mixed_batches(tmp_path):
    from edgedistill.config import validate_config
    from edgedistill.report.markdown import method_label

    cfg = tiny_config(student_args={"channels": [4, 8]})
    assert method_label(validate_config(cfg).distill.model_dump(mode="json")) == "kd (T=4.0, alpha=0.9)"
    cfg["distill"]["mix"] = {"kind": "mixup", "alpha": 0.4}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    said = "Distillation: kd (T=4.0, alpha=0.9), mixup (alpha=0.4) on the batches of both students."
    assert said in (tmp_path / "run" / "report.md").read_text()
    assert said in (tmp_path / "run" / "report.html").read_text()


def test_mvkd_with_mixing_is_told_to_stop_mixing_whatever_the_cache(tmp_path):
    cfg = tiny_config()
    cfg["distill"] |= {"method": "mvkd", "mix": {"kind": "mixup"}}
    for enabled in (True, False):
        cfg["distill"]["cache"] = {"enabled": enabled}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        proc = run_cli("run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"))
        assert_one_line_error(proc, "mvkd reads the teacher's logits on cached views of unmixed samples, so it "
                                    "cannot mix: set distill.mix.kind: none")
        assert not (tmp_path / "run").exists()

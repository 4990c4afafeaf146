"""`edgedistill tune --rescore K`: the best K trials trained again on more seeds, the best mean chosen and
confirmed, units shared out between workers of one folder, and bad input."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import optuna
import pytest

from conftest import run_cli
from edgedistill.cli.tune.report import chosen_text, rescore_table
from edgedistill.cli.tune.rescore import (Unit, agree_on_rule, choose, extra_seeds, rescored, run_units, top_trials,
                                        unit_queue)
from edgedistill.errors import UserError
from edgedistill.cli.tune.storage import open_storage, optuna_quiet, sqlite_url
from test_tune import assert_one_line_error, base_config, write_config


def row(number: int, accuracy: float | None, state: str = "complete") -> dict:
    return {"number": number, "state": state, "method": "kd", "settings": {}, "val_accuracy": accuracy}


def within(seconds: float, work) -> None:
    """Run `work` in a thread and fail, rather than hang, when it has not returned in time."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as e:  # re-raised below, in the test's thread
            errors.append(e)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if errors:
        raise errors[0]


def test_the_top_trials_are_the_complete_ones_best_first_and_the_earlier_on_a_tie():
    rows = [row(0, 0.90), row(1, 0.95, "pruned"), row(2, 0.92), row(3, 0.92), row(4, None, "fail"), row(5, 0.91)]
    assert [r["number"] for r in top_trials(rows, 3)] == [2, 3, 5]


def study_at(tmp_path) -> optuna.Study:
    return optuna.create_study(storage=open_storage(sqlite_url(tmp_path), 1), study_name="s")


def test_the_best_mean_over_the_extra_seeds_wins_and_the_seed_picked_on_is_not_counted(tmp_path):
    """Trial 0 led by luck on the seed the study picked it on; trial 1 is better at the two fresh seeds. Counting
    the first seed would choose trial 0 (93.3% against 90.7%)."""
    with optuna_quiet():
        study = study_at(tmp_path)
        seeds = extra_seeds(0, 2)
        for number, accuracies in ((0, (0.90, 0.90)), (1, (0.905, 0.905))):
            for seed, accuracy in zip(seeds, accuracies):
                study.set_user_attr(Unit(number, seed).key, accuracy)
        result = choose(study, [row(0, 0.99), row(1, 0.91)], 0, seeds)
    assert seeds == [1000, 1001], "past every seed --seeds can confirm on"
    assert result["chosen"] == 1 and result["seeds"] == [1000, 1001] and result["own_seed"] == 0
    assert [round(r["mean"], 4) for r in result["rows"]] == [0.9, 0.905]
    table = rescore_table(result)
    assert "| seed 0 (picked on; not counted) | seed 1000 | seed 1001 | mean ± std |" in table
    assert "| 1 (chosen) | kd | defaults | 91.00% | 90.50% | 90.50% | 90.50% ± 0.00 |" in table
    summary = {"best": row(1, 0.91), "rescore": result}
    assert chosen_text(summary) == "trial 1, kd (defaults), mean validation accuracy 90.50% over 2 more seed(s)"


def test_fewer_than_two_complete_trials_are_chosen_on_their_own_seed_and_said_so(tmp_path):
    said = []
    summary = {"trials": [row(0, 0.9), row(1, None, "pruned")], "best": row(0, 0.9)}
    with optuna_quiet():
        assert rescored(summary, study_at(tmp_path), 3, 2, 0, lambda u: 1 / 0, tmp_path, said.append, 1) is summary
    assert said == ["--rescore 3: the study has 1 complete trial(s); the best is chosen on its own seed"]


def test_a_study_chooses_its_best_one_way(tmp_path):
    with optuna_quiet():
        study = study_at(tmp_path)
        agree_on_rule(study, 0, 0, True, "s")  # nothing recorded yet: a study without rescoring
        agree_on_rule(study, 3, 2, True, "s")  # the first rescoring worker records its rule
        agree_on_rule(study, 0, 0, False, "s")  # a worker that runs trials only (--seeds 0) may join
        agree_on_rule(study, 3, 2, False, "s")
        with pytest.raises(UserError, match=r"chooses its best with --rescore 3 --rescore-seeds 2, this worker "
                                            r"with no --rescore; give those, or --seeds 0"):
            agree_on_rule(study, 0, 0, True, "s")
        with pytest.raises(UserError, match="this worker with --rescore 3 --rescore-seeds 1"):
            agree_on_rule(study, 3, 1, False, "s")
    assert study.user_attrs["rescore"] == {"top": 3, "seeds": 2}


@pytest.mark.parametrize("folders", [("study", "study"), ("machine_a", "machine_b")])
def test_two_workers_of_one_study_train_each_unit_once_in_one_folder_or_two(tmp_path, folders):
    """Two folders of one database stand for two machines: the queue, not a file lock, shares the units out."""
    url, trained, lock = sqlite_url(tmp_path), [], threading.Lock()
    units = [Unit(t, s) for t in (3, 7) for s in (1000, 1001)]
    with optuna_quiet():
        optuna.create_study(storage=open_storage(url, 1), study_name="s")

        def train(unit: Unit) -> float:
            with lock:
                trained.append(unit)
            threading.Event().wait(0.2)
            return 0.5 + unit.trial / 100

        def work(folder: str) -> None:
            try:
                study = optuna.load_study(study_name="s", storage=open_storage(url, 1))
                run_units(units, study, train, tmp_path / folder / "rescore", lambda line: None, 1)
            except Exception as e:  # a thread's exception is otherwise lost
                errors.append(e)

        errors: list[Exception] = []
        workers = [threading.Thread(target=work, args=(f,), daemon=True) for f in folders]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        attrs = optuna.load_study(study_name="s", storage=url).user_attrs
    assert not errors and not any(w.is_alive() for w in workers), errors
    assert sorted(trained, key=lambda u: (u.trial, u.seed)) == units, "each unit trained once"
    assert all(attrs[u.key] == 0.5 + u.trial / 100 for u in units), "every worker sees every result"


@pytest.mark.slow  # trains 3 trials, 4 rescoring runs and the confirmation
def test_rescore_chooses_on_the_mean_and_confirms_that_recipe(tmp_path):
    cfg, out = write_config(tmp_path, base_config()), tmp_path / "study"
    proc = run_cli("tune", str(cfg), "--out", str(out), "--trials", "3", "--methods", "kd,dist", "--rescore",
                   "2", "--rescore-seeds", "2", "--seeds", "2", "--quiet")
    assert proc.returncode in (0, 3), proc.stderr  # 3: the tiny student misses its device, as any tiny run may
    summary = json.loads((out / "tune.json").read_text())
    r = summary["rescore"]
    assert r["seeds"] == [1000, 1001] and len(r["rows"]) == 2
    means = {x["number"]: x["mean"] for x in r["rows"]}
    assert r["chosen"] == max(means, key=means.get) == summary["best"]["number"]
    for x in r["rows"]:
        assert x["own_seed_accuracy"] == next(t["val_accuracy"] for t in summary["trials"]
                                              if t["number"] == x["number"])
        for seed in (1000, 1001):
            unit = out / "rescore" / Unit(x["number"], seed).folder
            assert (unit / "student_kd.pt").is_file() and not (unit / "state").exists()
            assert json.loads((unit / "result.json").read_text())["best_val_accuracy"] == x["val_accuracies"][
                (1000, 1001).index(seed)]
    banks = [p for p in (out / "banks").iterdir() if p.is_dir()]
    assert len(banks) == 3, "a bank of views per seed: the study's and the two extra seeds' (kd and dist share)"
    assert json.loads((out / "confirm.json").read_text())["trial"] == r["chosen"], "the chosen recipe is confirmed"
    md = (out / "tune.md").read_text()
    assert "on 2 more seed(s) (validation split)" in md and "(chosen)" in md and "seed 1001" in md
    assert "over 2 more seed(s)" in proc.stdout
    assert "on 2 more seed(s)" in (out / "tune.html").read_text()


@pytest.mark.parametrize("args, fragment", [
    (("--rescore", "1"), "--rescore 1: give 0"),
    (("--rescore", "2", "--rescore-seeds", "0"), "--rescore-seeds 0: give 1 to 10"),
    (("--rescore", "2", "--set", "seed=4294967000"), "--rescore-seeds 2: the extra seeds start at seed + 1000"),
    (("--rescore-seeds", "3"), "--rescore-seeds 3: give --rescore K too"),
])
def test_bad_rescore_arguments_are_one_line(tmp_path, args, fragment):
    proc = run_cli("tune", str(write_config(tmp_path, base_config())), "--out", str(tmp_path / "s"), "--quiet",
                   "--seeds", "0", *args)
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "s").exists()


DEAD_WORKER = """
import sys, time
import optuna
from pathlib import Path
from edgedistill.cli.tune.rescore import Unit, run_units
from edgedistill.cli.tune.storage import open_storage, optuna_quiet
with optuna_quiet():
    study = optuna.load_study(study_name="s", storage=open_storage(sys.argv[1], 1))
    def train(unit):
        time.sleep(1.5)  # past the heartbeat interval: its trial has a heartbeat that stops when it is killed
        print("training", unit.trial, unit.seed, flush=True)
        time.sleep(60)
    run_units([Unit(1, 1000), Unit(1, 1001)], study, train, Path(sys.argv[2]), print, 1)
"""


def test_a_unit_whose_worker_died_on_another_machine_is_run_by_the_next(tmp_path):
    """The other worker (its own process and folder) takes the first unit and is killed in it: this worker runs the
    free unit, then the dead worker's once its heartbeat is stale, each once."""
    url, trained = sqlite_url(tmp_path), []
    units = [Unit(1, 1000), Unit(1, 1001)]
    with optuna_quiet():
        study = optuna.create_study(storage=open_storage(url, 1), study_name="s")
    other = subprocess.Popen([sys.executable, "-c", DEAD_WORKER, url, str(tmp_path / "machine_b" / "rescore")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().split() == ["training", "1", "1000"]
    finally:
        other.kill()
        other.wait(10)
    with optuna_quiet():
        within(60, lambda: run_units(units, study, lambda u: trained.append(u) or 0.9,
                                     tmp_path / "machine_a" / "rescore", lambda line: None, 1))
        queue = unit_queue(study)
    assert trained == [units[1], units[0]], "the free unit first, then the dead worker's"
    assert all(study.user_attrs[u.key] == 0.9 for u in units)
    states = {(t.number, t.state.name) for t in queue.trials}
    assert states == {(0, "FAIL"), (1, "COMPLETE"), (2, "COMPLETE")}, "the dead unit failed and queued again once"


def test_a_worker_whose_unit_was_taken_for_dead_keeps_its_result_and_goes_on(tmp_path):
    """Its heartbeats came late, so another worker failed its unit's trial while it trained: telling Optuna then
    fails, and the worker must neither crash nor lose the result it stored."""
    units = [Unit(1, 1000), Unit(1, 1001)]
    with optuna_quiet():
        study = study_at(tmp_path)

        def train(unit: Unit) -> float:
            if unit == units[0]:
                queue = unit_queue(study)
                running = queue.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                queue._storage.set_trial_state_values(running[0]._trial_id, optuna.trial.TrialState.FAIL)
            return 0.8

        run_units(units, study, train, tmp_path / "rescore", lambda line: None, 1)
    assert all(study.user_attrs[u.key] == 0.8 for u in units)


def test_units_done_for_an_older_study_of_the_same_name_are_trained_again(tmp_path):
    """The study was deleted and made again under its name; its queue still holds the old study's done units, whose
    results went with it: they are queued and trained again, not waited for."""
    unit, trained = Unit(2, 1000), []
    with optuna_quiet():
        study = study_at(tmp_path)
        old = unit_queue(study)
        old.enqueue_trial({}, user_attrs={"rescore_trial": unit.trial, "rescore_seed": unit.seed})
        old.optimize(lambda trial: 0.5, n_trials=1)
        within(30, lambda: run_units([unit], study, lambda u: trained.append(u) or 0.7, tmp_path / "rescore",
                                     lambda line: None, 1))
    assert trained == [unit] and study.user_attrs[unit.key] == 0.7


def test_a_finished_rescoring_units_damaged_result_is_one_line_naming_the_folder_to_delete(tmp_path):
    """A worker that died after training leaves result.json for the next; one edited or emptied by hand is refused,
    where it was a KeyError, and the message says which folder to delete to train that unit again."""
    from edgedistill.cli.tune.trial import finished_accuracy

    done = tmp_path / "rescore" / "0003-seed1000" / "result.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"best_val_accuracy": 0.75}))
    assert finished_accuracy(done) == 0.75
    for damaged in ("{}", "[]", "", json.dumps({"best_val_accuracy": "high"}), json.dumps({"best_val_accuracy": True})):
        done.write_text(damaged)
        with pytest.raises(UserError, match=f"{done} is damaged.*delete {done.parent} and run tune again"):
            finished_accuracy(done)

"""`edgedistill tune`: the search space, the study shared by several worker processes (SQLite and a real
PostgreSQL server), a killed worker's trial retried once, the test split never read while tuning, and bad input."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import optuna
import pytest
import yaml
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from conftest import TESTS, run_cli, tiny_config
from edgedistill.config import validate_config
from edgedistill.distill import METHODS, Offer
from edgedistill.errors import UserError
from edgedistill.cli.tune.space import METHOD_SPACES, MIX, RECIPE_SPACE, Dim, SearchSpace, eligible, recipe_config, \
    space_difference
from edgedistill.cli.tune.rescore import Unit
from edgedistill.cli.tune.storage import open_storage, optuna_quiet, redacted, sqlite_url
from edgedistill.cli.tune.study import pruner
from edgedistill.cli.tune.worker import Worker
from postgres_server import postgres_server, why_unavailable

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def base_config(limit_train: int = 200, epochs: int = 2, steps: int = 6) -> dict:
    """A tiny experiment; the process tests give it more rows and steps, so a trial lasts long enough for two
    workers to overlap or for one to be killed in the middle of it."""
    cfg = tiny_config(limit_train=limit_train)
    cfg["student"]["train"] |= {"epochs": epochs, "max_steps_per_epoch": steps}
    cfg["distill"]["cache"] = {"enabled": True, "views": 2}
    return cfg


def write_config(tmp_path, cfg: dict, name: str = "exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_cli(*args: str) -> subprocess.Popen:
    """The CLI in its own process, left running (run_cli waits for it)."""
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "edgedistill", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def load(url: str, name: str) -> optuna.Study:
    with optuna_quiet():
        return optuna.load_study(study_name=name, storage=url)


def assert_one_line_error(proc, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- the search space -------------------------------------------------------------------------------------------

def test_every_registered_method_has_a_search_space_entry():
    """Adding a method to methods.METHODS without its ranges would search it at its defaults only."""
    assert sorted(METHOD_SPACES) == sorted(METHODS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_dimension_is_a_config_key_at_both_ends_of_its_range(method):
    base = validate_config(base_config()).model_dump(mode="json")
    for end in ("low", "high"):
        settings = {d.key: (d.choices[0 if end == "low" else -1] if d.choices else getattr(d, end))
                    for d in SearchSpace((method,), {}).dims(method)}
        raw = recipe_config(base, method, settings)
        if "views" in METHODS[method].needs:
            raw["distill"]["cache"]["enabled"] = True
        cfg = validate_config(raw).model_dump(mode="json")
        assert method in ([cfg["distill"]["method"]] if isinstance(cfg["distill"]["method"], str)
                          else cfg["distill"]["method"])
        for key, value in settings.items():
            node = cfg
            for part in key.split("."):
                node = node[part]
            assert node == value, key


def test_methods_are_left_out_by_what_the_registry_says_they_need():
    space = eligible(list(METHODS), lambda need: "no taps" if need == "features" else None, Offer(cache=True))
    assert set(space.excluded) == {m for m, s in METHODS.items() if "features" in s.needs}
    assert set(space.excluded.values()) == {"no taps"}
    assert set(space.methods) == {m for m, s in METHODS.items() if "features" not in s.needs}


def test_a_method_that_refuses_what_the_run_offers_is_left_out_with_its_own_reason():
    """No teacher cache: mvkd, which reads every cached view, says so itself; the other methods stay in."""
    space = eligible(list(METHODS), lambda need: None, Offer(cache=False))
    assert set(space.excluded) == {"mvkd"}
    assert "distill.cache.enabled" in space.excluded["mvkd"]
    assert "kd" in space.methods


def test_a_recipe_dimension_is_drawn_by_every_method(monkeypatch):
    """The mix knob (or any knob every recipe may turn) is one RECIPE_SPACE entry."""
    import edgedistill.cli.tune.space as space_module

    monkeypatch.setattr(space_module, "RECIPE_SPACE", (Dim("student.train.label_smoothing", 0.0, 0.2),))
    space = SearchSpace(("kd", "nkd"), {})
    assert all("student.train.label_smoothing" in dims for dims in space.describe().values())
    study = optuna.create_study(direction="maximize")
    method, settings = space.sample(study.ask())
    assert 0.0 <= settings["student.train.label_smoothing"] <= 0.2
    assert RECIPE_SPACE == (MIX,)  # the real table is untouched


def test_the_configs_own_recipe_is_the_studys_params_and_a_setting_out_of_range_is_left_to_the_sampler():
    base = validate_config(tiny_config()).model_dump(mode="json")
    base["distill"]["dist"] |= {"temperature": 4.0, "beta": 20.0}  # beta is past the searched 0.5..4
    space = SearchSpace(("kd", "dist"), {}, recipe=(MIX,))
    assert space.config_params(base, "kd") == {"method": "kd", "kd/distill.temperature": 4.0,
                                               "kd/distill.alpha": 0.9, "kd/distill.logit_standardization": False,
                                               "distill.mix.kind": "none"}
    assert space.config_params(base, "dist") == {
        "method": "dist", "dist/distill.dist.temperature": 4.0, "dist/distill.dist.gamma": 2.0,
        "dist/distill.logit_standardization": False, "distill.mix.kind": "none"}
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(space.config_params(base, "dist"))
    method, settings = space.sample(study.ask())  # the sampler fills in what the config could not give
    assert method == "dist" and settings["distill.dist.temperature"] == 4.0
    assert 0.5 <= settings["distill.dist.beta"] <= 4.0


def test_a_trial_is_pruned_only_in_the_bottom_quarter_and_from_half_its_epochs_on():
    """Good recipes swap ranks as the rate anneals: a trial just below the median keeps training."""
    study = optuna.create_study(direction="maximize", pruner=pruner(30))
    for final in (0.90, 0.91, 0.92, 0.93):
        done = study.ask()
        for epoch in range(1, 31):
            done.report(final, epoch)
        study.tell(done, final)
    behind = study.ask()  # below the median (0.915), above the bottom quarter (0.9075)
    behind.report(0.912, 15)
    assert not behind.should_prune()
    weak = study.ask()
    weak.report(0.80, 14)
    assert not weak.should_prune()  # before half the epochs
    weak.report(0.80, 15)
    assert weak.should_prune()


def test_space_difference_names_what_differs():
    a = SearchSpace(("kd", "dist"), {}).describe()
    assert space_difference(a, a) is None
    assert space_difference(a, SearchSpace(("kd", "dkd"), {}).describe()) == \
        "it searches methods kd, dist; this command kd, dkd"
    b = {m: dict(d) for m, d in a.items()}
    b["kd"]["distill.alpha"] = "0.5..1"
    assert space_difference(a, b) == "kd's distill.alpha: it searches 0.1..1; this command 0.5..1"


def test_storage_urls_are_shown_without_their_password():
    assert redacted("postgresql://bob:hunter2@db.example:5432/tune") == "postgresql://bob:***@db.example:5432/tune"
    assert "hunter2" not in redacted("postgresql://bob:hunter2@/tune?host=/tmp")
    assert redacted("sqlite:////tmp/a/study.db") == "sqlite:////tmp/a/study.db"


def test_an_unreachable_database_is_one_line_without_the_password():
    with pytest.raises(UserError) as err:
        open_storage("postgresql://bob:hunter2@127.0.0.1:1/tune", 5)
    assert "postgresql://bob:***@127.0.0.1:1/tune" in str(err.value) and "hunter2" not in str(err.value)


# --- workers sharing a study (threads here, processes below) -----------------------------------------------------

def quick_objective(trial: optuna.Trial) -> float:
    time.sleep(0.05)
    return trial.suggest_float("x", 0.0, 1.0)


def test_two_workers_stop_at_exactly_the_total(tmp_path):
    url = sqlite_url(tmp_path)
    with optuna_quiet():
        optuna.create_study(storage=open_storage(url, 1), study_name="s", direction="maximize")

        def work() -> None:
            study = optuna.load_study(study_name="s", storage=open_storage(url, 1))
            Worker(study, quick_objective, 7, 0.1, lambda t: None).run(60)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    trials = load(url, "s").trials
    assert sum(t.state in FINISHED for t in trials) == 7
    assert all(t.state in FINISHED or t.user_attrs.get("surplus") for t in trials)


def test_the_config_recipe_is_queued_once_per_method_whatever_the_next_workers_config_says(tmp_path):
    """A second worker whose config sets another temperature joins the study without queuing a second "config's
    own recipe": tune.md names one per method, the first worker's."""
    from edgedistill.cli.tune.study import start_from_config

    base = validate_config(tiny_config()).model_dump(mode="json")
    other = copy.deepcopy(base)
    other["distill"]["temperature"] = 2.0
    space = SearchSpace(("kd", "dist"), {}, recipe=(MIX,))
    with optuna_quiet():
        study = optuna.create_study(storage=open_storage(sqlite_url(tmp_path), 1), study_name="s",
                                    direction="maximize")
        start_from_config(study, space, base, 10)
        study.tell(study.ask(), 0.5)  # the kd recipe ran
        start_from_config(study, space, other, 10)
        start_from_config(study, space, base, 10)
    queued = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("from_config")]
    assert [t.system_attrs["fixed_params"]["method"] for t in queued] == ["kd", "dist"]
    assert queued[0].system_attrs["fixed_params"]["kd/distill.temperature"] == base["distill"]["temperature"]


def test_a_recipe_two_workers_queued_at_once_runs_once(tmp_path):
    """skip_if_exists is not atomic across machines: the second copy is failed as surplus, not run."""
    url = sqlite_url(tmp_path)
    with optuna_quiet():
        study = optuna.create_study(storage=open_storage(url, 1), study_name="s", direction="maximize")
        for _ in range(2):
            study.enqueue_trial({"x": 0.25}, user_attrs={"from_config": True})
        Worker(study, quick_objective, 3, 0.1, lambda t: None).run(60)
    trials = load(url, "s").trials
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 3 and sum(t.params["x"] == 0.25 for t in finished) == 1
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["copy_of"] == 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_the_best_recipe_waits_for_the_trials_other_workers_are_still_running(tmp_path):
    """A worker past its --timeout chooses the best recipe only once the trial another worker started ends."""
    url, lines = sqlite_url(tmp_path), []
    with optuna_quiet():
        storage = open_storage(url, 20)  # a trial goes stale only after 40 s
        study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
        study.tell(study.ask(), 0.5)
        elsewhere = study.ask()
        storage.record_heartbeat(elsewhere._trial_id)
        def finish_and_start_another() -> None:
            study.tell(elsewhere, 0.9)
            storage.record_heartbeat(study.ask()._trial_id)  # that worker's next trial, after the budget

        finisher = threading.Timer(1.0, finish_and_start_another)
        finisher.start()
        settling = threading.Thread(target=Worker(study, quick_objective, 9, 0.1, lambda t: None).settle,
                                    args=(lines.append,), daemon=True)
        settling.start()
        settling.join(15)
        at_return = storage.get_trial(elsewhere._trial_id).state
        finisher.join()
    assert not settling.is_alive(), "settle waited for a trial started after it began"
    assert at_return == TrialState.COMPLETE and load(url, "s").best_value == 0.9
    assert lines == ["waiting for 1 trial(s) other workers are running before choosing the best recipe"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_whose_worker_stopped_answering_is_retried_once_with_its_recipe(tmp_path):
    url = sqlite_url(tmp_path)
    with optuna_quiet():
        storage = open_storage(url, 1)
        study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
        dead = study.ask()
        x = dead.suggest_float("x", 0.0, 1.0)
        storage.record_heartbeat(dead._trial_id)  # one heartbeat, then silence: its worker died
        Worker(study, quick_objective, 3, 0.2, lambda t: None).run(60)
    trials = load(url, "s").trials
    assert trials[0].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params["x"] == x
    assert sum(t.state in FINISHED for t in trials) == 3 and sum(t.state == TrialState.FAIL for t in trials) == 1


def test_a_queued_trial_two_sqlite_workers_reach_at_once_goes_to_one(tmp_path, monkeypatch):
    """Each worker is held between reading the queued trial's state and writing RUNNING, until both have read it
    (or 2 s pass): the database must make the second wait for the first, or both take the trial."""
    url, taken = sqlite_url(tmp_path), []
    with optuna_quiet():
        optuna.create_study(storage=open_storage(url, 1), study_name="s").enqueue_trial({"x": 0.5})
    both_read, check = threading.Barrier(2), RDBStorage.check_trial_is_updatable

    def held(self, trial_id: int, state: TrialState) -> None:
        if state == TrialState.WAITING:
            try:
                both_read.wait(2)
            except threading.BrokenBarrierError:
                pass  # the other worker could not read meanwhile
        return check(self, trial_id, state)

    monkeypatch.setattr(RDBStorage, "check_trial_is_updatable", held)

    def worker() -> None:
        with optuna_quiet():
            taken.append(optuna.load_study(study_name="s", storage=open_storage(url, 1)).ask().number)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == [0, 1], "one worker took the queued trial 0, the other a new one"


def test_a_worker_whose_trial_was_taken_for_dead_goes_on_to_the_next(tmp_path):
    """Another worker failed this one's trial while it ran (its heartbeats came late) and queued it again: telling
    Optuna then fails, and the worker must go on, not crash."""
    with optuna_quiet():
        study = optuna.create_study(storage=open_storage(sqlite_url(tmp_path), 1), study_name="s",
                                    direction="maximize")

        def objective(trial: optuna.Trial) -> float:
            if trial.number == 0:
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            return quick_objective(trial)

        Worker(study, objective, 2, 0.2, lambda t: None).run(60)
    states = [t.state for t in study.trials]
    assert states[0] == TrialState.FAIL and sum(s in FINISHED for s in states) == 2


# --- the test split ----------------------------------------------------------------------------------------------

class PoisonedRows:
    """Test rows that raise when read: only their count and shape may be asked for."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape, self.dtype = shape, np.float32

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, item):
        raise AssertionError("the test split was read")

    def __array__(self, *args, **kwargs):
        raise AssertionError("the test split was read")


def test_tuning_never_reads_the_test_split(tmp_path, monkeypatch):
    import importlib

    from edgedistill.cli.tune import tune
    import edgedistill

    prepare_module = importlib.import_module("edgedistill.pipeline.prepare")  # the package's prepare() hides it
    real = prepare_module.load_dataset

    def poisoned(*args, **kwargs):
        data = real(*args, **kwargs)
        data.x_test, data.y_test = PoisonedRows(data.x_test.shape), PoisonedRows(data.y_test.shape)
        return data

    monkeypatch.setattr(prepare_module, "load_dataset", poisoned)
    with pytest.raises(AssertionError, match="the test split was read"):  # the poison works: a run reads test
        edgedistill.run(tiny_config(), out_dir=tmp_path / "run", progress=False)
    result = tune(base_config(), tmp_path / "study", trials=3, seeds=0, methods=["kd", "dist"], progress=False)
    assert result.summary["states"].get("complete", 0) + result.summary["states"].get("pruned", 0) == 3
    first = result.summary["trials"][:2]  # the search starts from the config's recipe for each method
    assert [(t["method"], t["note"]) for t in first] == [("kd", "the config's own recipe"),
                                                          ("dist", "the config's own recipe")]
    assert first[1]["settings"] == {"distill.dist.temperature": 1.0, "distill.dist.beta": 2.0,
                                    "distill.dist.gamma": 2.0, "distill.logit_standardization": False,
                                    "distill.mix.kind": "none"}
    assert result.summary["trials"][2]["note"] != "the config's own recipe"


# --- worker processes --------------------------------------------------------------------------------------------

@pytest.mark.slow  # worker processes (start_cli)
def test_two_processes_share_one_sqlite_study_and_the_best_recipe_is_confirmed(tmp_path):
    """Two `tune` processes in one folder: one trains the teacher while the other waits, both run trials until
    the study holds exactly --trials, one runs the best recipe against scratch over seeds, tune.md has it all.
    Trials of 10 epochs on 3,000 rows, about 2 s each: with half-second ones the first worker once finished all 6
    under load before the second had loaded the teacher."""
    cfg, out = write_config(tmp_path, base_config(3000, 10, 40)), tmp_path / "study"
    args = ("tune", str(cfg), "--out", str(out), "--trials", "6", "--methods", "kd,dist,nkd,mvkd",
            "--heartbeat", "2", "--seeds", "2")
    procs = [start_cli(*args) for _ in range(2)]
    results = [finish(p) for p in procs]
    for rc, _, err in results:
        assert rc == 0, err
    study = load(sqlite_url(out), "tiny-mnist1d-resnet-convnet")
    finished = [t for t in study.trials if t.state in FINISHED]
    assert len(finished) == 6
    assert len({t.user_attrs["worker"] for t in finished}) == 2, "both workers ran trials"
    assert sum("KD gain over scratch" in out_ for _, out_, _ in results) >= 1
    md = (out / "tune.md").read_text()
    assert md.count("| complete |") + md.count("| pruned |") == 6
    assert "against scratch over 2 seeds (test split)" in md and "paired by seed" in md
    page = (out / "tune.html").read_text()
    assert page.count("<tr>") >= 7 and 'href="confirm/seed_0/report.html"' in page
    assert (out / "confirm" / "seed_0" / "report.html").is_file()
    summary = json.loads((out / "tune.json").read_text())
    assert summary["confirm"]["summary"]["seeds"] == [0, 1]
    best = summary["best"]
    assert json.loads((out / "confirm" / "seed_0" / "metrics.json").read_text())["config"]["distill"]["method"] \
        == best["method"]


@pytest.fixture(scope="module")
def postgres_url():
    why = why_unavailable()
    if why:
        pytest.skip(why)
    with postgres_server() as url:
        yield url


@pytest.mark.slow  # worker processes (start_cli)
def test_two_processes_on_two_folders_share_one_postgres_study(tmp_path, postgres_url):
    """As on two machines: each worker has its own folder, the second reads the first one's teacher, and the
    PostgreSQL study ends with exactly --trials finished trials, run by both."""
    cfg = write_config(tmp_path, base_config(1000, 3, 12))
    common = ("--storage", postgres_url, "--study-name", "pg-two", "--heartbeat", "2", "--seeds", "0", "--quiet",
              "--methods", "kd,dist,nkd")
    first = run_cli("tune", str(cfg), "--out", str(tmp_path / "a"), "--trials", "1", *common)
    assert first.returncode == 0, first.stderr
    teacher = tmp_path / "a" / "teacher.pt"
    rescore = ("--rescore", "2", "--rescore-seeds", "1")
    procs = [start_cli("tune", str(cfg), "--out", str(tmp_path / "a"), "--trials", "7", *common, *rescore),
             start_cli("tune", str(cfg), "--out", str(tmp_path / "b"), "--trials", "7", *common, *rescore,
                       "--set", f"teacher.checkpoint={teacher}")]
    for rc, _, err in (finish(p) for p in procs):
        assert rc == 0, err
    trials = load(postgres_url, "pg-two").trials
    units = [t for t in load(postgres_url, "pg-two:rescore").trials if t.state == TrialState.COMPLETE]
    trained = sorted(unit.name for folder in "ab" for unit in (tmp_path / folder / "rescore").glob("*-seed*")
                     if (unit / "student_kd.pt").is_file())
    assert len(units) == 2, "the best 2 trials at 1 more seed"
    assert trained == sorted(Unit(t.user_attrs["rescore_trial"], t.user_attrs["rescore_seed"]).folder
                             for t in units), "each unit trained in one of the two folders"
    chosen = [json.loads((tmp_path / f / "tune.json").read_text())["rescore"] for f in "ab"]
    assert chosen[0] == chosen[1], "both folders choose on the same two units, each trained once"
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 7
    assert len({t.user_attrs["worker"] for t in finished}) == 3, "the first run and both workers ran trials"
    assert not (tmp_path / "b" / "logs" / "teacher.jsonl").exists(), "the second folder trained no teacher"
    queued = [t.params["method"] for t in finished if t.user_attrs.get("from_config")]
    assert sorted(queued) == ["dist", "kd", "nkd"], "each method's config recipe ran once"


def test_a_worker_without_the_studys_teacher_is_refused(tmp_path, postgres_url):
    cfg = write_config(tmp_path, base_config())
    common = ("--storage", postgres_url, "--study-name", "pg-teacher", "--seeds", "0", "--quiet", "--methods", "kd")
    assert run_cli("tune", str(cfg), "--out", str(tmp_path / "a"), "--trials", "1", *common).returncode == 0
    proc = run_cli("tune", str(cfg), "--out", str(tmp_path / "b"), "--trials", "2", *common)
    assert_one_line_error(proc, "the study's teacher was made at", str(tmp_path / "a" / "teacher.pt"),
                          "teacher.checkpoint")


def test_a_wrong_password_is_one_line_without_it(tmp_path, postgres_url):
    wrong = postgres_url.replace(":tune-secret@", ":not-it@")
    proc = run_cli("tune", str(write_config(tmp_path, base_config())), "--out", str(tmp_path / "s"),
                   "--storage", wrong, "--quiet")
    line = assert_one_line_error(proc, "--storage postgresql://edgedistill:***@127.0.0.1", "password")
    assert "not-it" not in line and not (tmp_path / "s").exists()


@pytest.mark.slow  # worker processes (start_cli)
def test_a_killed_workers_trial_is_retried_and_counted_once(tmp_path):
    """SIGKILL a worker in the middle of a trial: the next worker marks it FAIL once its heartbeat is stale, runs
    the same recipe again, resuming from the epochs it had finished, and the study ends with exactly --trials."""
    cfg, out = write_config(tmp_path, base_config(1500, 6, 40)), tmp_path / "study"
    args = ("tune", str(cfg), "--out", str(out), "--trials", "2", "--heartbeat", "1", "--seeds", "0", "--quiet",
            "--methods", "kd")
    victim, url, deadline = start_cli(*args), sqlite_url(out), time.monotonic() + 240
    running = []
    while not running and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.5)
        if (out / "study.db").exists() and (out / "trials").exists():
            running = [t for t in load(url, "tiny-mnist1d-resnet-convnet").trials
                       if t.state == TrialState.RUNNING and t.intermediate_values]
    assert running, "the worker never got one epoch into a trial"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    rc, _, err = finish(start_cli(*args))  # the rest of the study by one worker: may take longer than run_cli allows
    assert rc == 0, err
    trials = load(url, "tiny-mnist1d-resnet-convnet").trials
    killed = trials[running[0].number]
    assert killed.state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].state in FINISHED and retry[0].params == killed.params
    folder = out / "trials" / f"{killed.number:04d}"  # the retry trains in the killed trial's folder: it resumes
    assert (folder / "student_kd.pt").exists() and not (out / "trials" / f"{retry[0].number:04d}").exists()
    assert set(killed.intermediate_values) <= set(retry[0].intermediate_values)
    assert sum(t.state in FINISHED for t in trials) == 2 and sum(t.state == TrialState.FAIL for t in trials) == 1


# --- bad input ---------------------------------------------------------------------------------------------------

def test_an_unreachable_storage_url_stops_before_anything_is_written(tmp_path):
    proc = run_cli("tune", str(write_config(tmp_path, base_config())), "--out", str(tmp_path / "s"),
                   "--storage", "postgresql://bob:hunter2@127.0.0.1:1/tune", "--quiet")
    line = assert_one_line_error(proc, "--storage postgresql://bob:***@127.0.0.1:1/tune", "cannot open")
    assert "hunter2" not in line and not (tmp_path / "s").exists()


def test_a_second_worker_with_another_search_space_is_refused(tmp_path):
    cfg, out = write_config(tmp_path, base_config()), tmp_path / "study"
    first = run_cli("tune", str(cfg), "--out", str(out), "--trials", "1", "--seeds", "0", "--quiet",
                    "--methods", "kd,dist")
    assert first.returncode == 0, first.stderr
    proc = run_cli("tune", str(cfg), "--out", str(out), "--trials", "2", "--seeds", "0", "--quiet",
                   "--methods", "kd,dkd")
    assert_one_line_error(proc, "another search space", "it searches methods kd, dist; this command kd, dkd")
    proc = run_cli("tune", str(cfg), "--out", str(out), "--trials", "2", "--seeds", "0", "--quiet",
                   "--methods", "kd,dist", "--set", "student.train.lr=0.01")
    assert_one_line_error(proc, "another experiment", "student.train.lr is 0.003 there, 0.01 here")
    proc = run_cli("tune", str(cfg), "--out", str(out), "--trials", "2", "--seeds", "0", "--quiet",
                   "--methods", "kd,dist", "--study-name", "other")
    assert_one_line_error(proc, "holds study 'tiny-mnist1d-resnet-convnet'", "not 'other'")
    trials = load(sqlite_url(out), "tiny-mnist1d-resnet-convnet").trials
    assert len(trials) == 1 and trials[0].state in FINISHED  # nothing of the study was lost


def test_mix_none_keeps_every_trial_unmixed_and_the_study_remembers_it(tmp_path):
    cfg, out = write_config(tmp_path, base_config()), tmp_path / "study"
    first = run_cli("tune", str(cfg), "--out", str(out), "--trials", "1", "--seeds", "0", "--quiet",
                    "--methods", "kd", "--mix", "none")
    assert first.returncode == 0, first.stderr
    summary = json.loads((out / "tune.json").read_text())
    assert "distill.mix.kind" not in summary["space"]["kd"]
    assert "distill.mix.kind" not in summary["trials"][0]["settings"]
    proc = run_cli("tune", str(cfg), "--out", str(out), "--trials", "2", "--seeds", "0", "--quiet",
                   "--methods", "kd", "--mix", "none,mixup")
    assert_one_line_error(proc, "another search space", "kd's distill.mix.kind: it searches nothing; this command "
                                                        "one of none, mixup")


@pytest.mark.parametrize("args, fragment", [
    (("--methods", "kd,nosuch"), "--methods: unknown method 'nosuch'"),
    (("--mix", "none,blend"), "--mix: 'blend' is not a mix this data allows; choose from none, mixup, cutmix"),
    (("--methods", "mvkd", "--set", "distill.cache.enabled=false"), "--methods: mvkd cannot run here"),
    (("--seeds", "1"), "--seeds 1"),
    (("--trials", "0"), "--trials 0"),
])
def test_bad_tune_arguments_are_one_line(tmp_path, args, fragment):
    proc = run_cli("tune", str(write_config(tmp_path, base_config())), "--out", str(tmp_path / "s"), "--quiet",
                   *args)
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "s").exists()


def test_a_folder_that_is_not_a_study_is_left_alone(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("mine")
    proc = run_cli("tune", str(write_config(tmp_path, base_config())), "--out", str(tmp_path / "s"), "--quiet")
    assert_one_line_error(proc, "--out", "not a tune study")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["notes.txt"]

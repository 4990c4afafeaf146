"""Choosing the best recipe on more than one seed (`tune --rescore K`).

A trial is scored on one seed's validation, and the best few recipes of a study often lie closer together than
one recipe's validation moves from seed to seed (docs/benchmarks.md, fashion_mnist_tune_30_w64_p25: five complete
trials within 0.43 points, while the scratch control's validation varies by 0.28 over seeds). So the top K complete
trials each train again on `--rescore-seeds` more seeds, on the same split, teacher and validation rows, and the
best mean validation accuracy over those seeds is chosen. The trials' own seed is shown but not counted: the best
few reached the top partly by luck on it. The extra seeds lie past every seed `--seeds` can confirm on.

Each (trial, seed) is one unit, trained in rescore/<trial>-seed<s>/. The units are queued as trials of a companion
study in the same database (`<study>:rescore`), so workers on any machine share them out as they share trials:
Optuna hands a queued trial to one worker only, a unit whose worker dies (no heartbeat) is failed and queued
again, and a copy queued by two workers at once is dropped. A lock per unit folder keeps two workers of one
folder out of each other's files; a unit run again there resumes from its last epoch. Results are stored in the
study's user attributes, where every worker reads them. A queued trial goes to one worker only: PostgreSQL locks
its row, and on SQLite each transaction takes the database's lock at BEGIN (storage.py).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from filelock import FileLock
from optuna.trial import FrozenTrial, TrialState

from edgedistill.cli.tune.worker import run_one
from edgedistill.config import SEED_MAX
from edgedistill.errors import UserError
from edgedistill.pipeline.inputs import MAX_SEEDS

MAX_RESCORE_SEEDS = 10
DEFAULT_SEEDS = 2


@dataclass(frozen=True)
class Unit:
    """One complete trial's recipe at one more seed."""

    trial: int
    seed: int

    @property
    def key(self) -> str:  # the study's user attribute holding its validation accuracy
        return f"rescore {self.trial} seed {self.seed}"

    @property
    def folder(self) -> str:
        return f"{self.trial:04d}-seed{self.seed}"


def extra_seeds(seed: int, n: int) -> list[int]:
    """Seeds past every one `--seeds` can confirm on (seed .. seed + MAX_SEEDS - 1)."""
    return [seed + MAX_SEEDS + i for i in range(n)]


def check_rescore(top: int, n: int | None, seed: int) -> int:
    """--rescore and --rescore-seeds checked before anything is made; the number of extra seeds (None: the
    default; 0 without --rescore)."""
    if n is not None and not top:
        raise UserError(f"--rescore-seeds {n}: give --rescore K too, the number of best trials to train again")
    n = DEFAULT_SEEDS if n is None else n
    if top == 1 or top < 0:
        raise UserError(f"--rescore {top}: give 0 (choose on the trials' own seed) or the number of best trials, "
                        "at least 2, to train again on more seeds")
    if top and not 1 <= n <= MAX_RESCORE_SEEDS:
        raise UserError(f"--rescore-seeds {n}: give 1 to {MAX_RESCORE_SEEDS} more seeds per trial")
    if top and extra_seeds(seed, n)[-1] > SEED_MAX:
        raise UserError(f"--rescore-seeds {n}: the extra seeds start at seed + {MAX_SEEDS} and pass {SEED_MAX}; "
                        "lower seed")
    return n if top else 0


def agree_on_rule(study: optuna.Study, top: int, n: int, confirms: bool, where: str) -> None:
    """A study chooses its best one way: the first worker that rescores records --rescore and --rescore-seeds, and
    a worker that would choose otherwise and confirm its choice is refused (one that runs trials only may)."""
    held = study.user_attrs.get("rescore")
    if top and held is None:
        study.set_user_attr("rescore", {"top": top, "seeds": n})
        held = study.user_attrs["rescore"]  # read back: of two workers starting at once, the later write holds
    if held and (top or confirms) and held != {"top": top, "seeds": n}:
        mine = f"--rescore {top} --rescore-seeds {n}" if top else "no --rescore"
        raise UserError(f"{where}: the study chooses its best with --rescore {held['top']} --rescore-seeds "
                        f"{held['seeds']}, this worker with {mine}; give those, or --seeds 0 to run trials only")


def top_trials(rows: list[dict], k: int) -> list[dict]:
    """The k complete trials of best validation accuracy (the earlier trial first on a tie)."""
    complete = [r for r in rows if r["state"] == "complete"]
    return sorted(complete, key=lambda r: (-r["val_accuracy"], r["number"]))[:k]


QUEUE_SUFFIX = ":rescore"
LIVE = (TrialState.WAITING, TrialState.RUNNING)  # a done unit is known by its result in the study, not by its trial


class SurplusUnit(Exception):
    """A queued unit another trial of the queue already holds, or a trial that holds no unit."""


def unit_of(trial: FrozenTrial | optuna.Trial) -> Unit | None:
    """The unit a trial of the queue holds (a retry keeps its user attributes); None for one Optuna made up."""
    attrs = trial.user_attrs
    return Unit(attrs["rescore_trial"], attrs["rescore_seed"]) if "rescore_trial" in attrs else None


def unit_queue(study: optuna.Study) -> optuna.Study:
    """The companion study whose trials are the units, in the study's own database."""
    storage = study._storage  # noqa: SLF001 (Optuna has no public accessor; the queue must share the database)
    return optuna.create_study(storage=storage, study_name=study.study_name + QUEUE_SUFFIX, direction="maximize",
                               load_if_exists=True)


def queue_missing(queue: optuna.Study, units: list[Unit]) -> None:
    """Queue each unit no trial of the queue is waiting for or running (the units given have no result yet, so a
    done trial of theirs is from an older study of the same name); a copy two workers queue at once is dropped when
    it is run (held_earlier)."""
    held = {unit_of(t) for t in queue.get_trials(deepcopy=False, states=LIVE)}
    for unit in units:
        if unit not in held:
            queue.enqueue_trial({}, user_attrs={"rescore_trial": unit.trial, "rescore_seed": unit.seed})


def held_earlier(queue: optuna.Study, number: int, unit: Unit) -> bool:
    """Whether an earlier trial of the queue holds the same unit and is waiting or running."""
    return any(t.number < number and unit_of(t) == unit for t in queue.get_trials(deepcopy=False, states=LIVE))


def run_units(units: list[Unit], study: optuna.Study, train: Callable[[Unit], float], locks: Path,
              say: Callable[[str], None], poll_s: float) -> None:
    """Train units the queue hands this worker until the study has a result for every one; while the rest run
    elsewhere, wait, failing any whose worker has stopped beating so that it is queued again."""
    locks.mkdir(parents=True, exist_ok=True)
    queue = unit_queue(study)

    def objective(trial: optuna.Trial) -> float:
        unit = unit_of(trial)
        if unit is None or unit.key in study.user_attrs or held_earlier(queue, trial.number, unit):
            raise SurplusUnit(f"trial {trial.number} of the queue holds no unit of its own")
        with FileLock(str(locks / f".{unit.folder}.lock")):  # a worker of this folder may be on it still
            if unit.key in study.user_attrs:  # read under the lock: a worker here, whose trial was taken for
                return study.user_attrs[unit.key]  # dead and queued again, finished it after all
            accuracy = train(unit)
            study.set_user_attr(unit.key, accuracy)
        say(f"trial {unit.trial} at seed {unit.seed}: validation {100 * accuracy:.2f}%")
        return accuracy

    while True:
        optuna.storages.fail_stale_trials(queue)  # a dead worker's unit: FAIL, and queued again
        left = [u for u in units if u.key not in study.user_attrs]
        if not left:
            return
        queue_missing(queue, left)
        if not queue.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            time.sleep(poll_s)  # the rest runs elsewhere, unless its worker dies
            continue
        run_one(queue, objective, (SurplusUnit,))


def choose(study: optuna.Study, candidates: list[dict], seed: int, seeds: list[int]) -> dict:
    """Each candidate's validation accuracy at the extra seeds, its mean (the choice) and, for reference, at its
    trial's seed; the better single-seed trial first on a tie."""
    attrs = study.user_attrs
    rows = []
    for c in candidates:
        accuracies = [attrs[Unit(c["number"], s).key] for s in seeds]
        rows.append({"number": c["number"], "method": c["method"], "settings": c["settings"],
                     "own_seed_accuracy": c["val_accuracy"], "val_accuracies": accuracies,
                     "mean": statistics.fmean(accuracies),
                     "std": statistics.stdev(accuracies) if len(accuracies) > 1 else None})
    chosen = max(rows, key=lambda r: r["mean"])  # max keeps the first of equals: candidates are best-first
    return {"own_seed": seed, "seeds": seeds, "rows": rows, "chosen": chosen["number"]}


def chosen_mean(rescore: dict) -> float:
    """The chosen trial's mean validation accuracy over the extra seeds."""
    return next(r["mean"] for r in rescore["rows"] if r["number"] == rescore["chosen"])


def rescored(summary: dict, study: optuna.Study, top: int, n: int, seed: int, train: Callable[[Unit], float],
             out: Path, say: Callable[[str], None], poll_s: float) -> dict:
    """The summary with the best `top` trials rescored over `n` more seeds and the best mean as its best."""
    candidates = top_trials(summary["trials"], top)
    if len(candidates) < 2:
        say(f"--rescore {top}: the study has {len(candidates)} complete trial(s); the best is chosen on its own seed")
        return summary
    seeds = extra_seeds(seed, n)
    say(f"training the best {len(candidates)} trials again on {n} more seed(s) before choosing")
    run_units([Unit(c["number"], s) for c in candidates for s in seeds], study, train, out / "rescore", say, poll_s)
    return with_choice(summary, choose(study, candidates, seed, seeds))


def with_choice(summary: dict, result: dict) -> dict:
    """The summary whose best is the trial the rescoring chose, with the rescoring table it was chosen on."""
    best = next(r for r in summary["trials"] if r["number"] == result["chosen"])
    return summary | {"rescore": result, "best": best}


def recorded_choice(summary: dict, study: optuna.Study, seed: int) -> dict:
    """The summary with the choice the study's rule makes, when every unit of its current best trials has a result:
    a worker that runs trials only trains no unit, but its report keeps the choice the others made."""
    held = study.user_attrs.get("rescore")
    if not held:
        return summary
    candidates, seeds = top_trials(summary["trials"], held["top"]), extra_seeds(seed, held["seeds"])
    units = [Unit(c["number"], s) for c in candidates for s in seeds]
    if len(candidates) < 2 or any(u.key not in study.user_attrs for u in units):
        return summary
    return with_choice(summary, choose(study, candidates, seed, seeds))

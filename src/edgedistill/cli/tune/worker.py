"""One `tune` process is one worker of the study: it runs trials until the study holds `--trials` finished ones
(complete or pruned), however many workers share it.

Before each trial a worker counts the trials that are finished or running; when they already make up the total it
waits instead, since a running trial whose worker dies is queued again and must be run. A trial that two
workers start at the same moment beyond the total is failed at once (marked `surplus`), so the study never holds
more than the total of finished trials.
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from edgedistill.errors import UserError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BUSY = FINISHED + (TrialState.RUNNING,)  # a queued (WAITING) trial is work left to do, not work taken
CLAIMED = BUSY + (TrialState.WAITING,)
WORKER = f"{socket.gethostname()}:{os.getpid()}"
MAX_FAILED_IN_A_ROW = 3


class SurplusTrial(Exception):
    """The study already had its total of trials when this one started."""


def count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def is_surplus(study: optuna.Study, trial: optuna.Trial, total: int) -> bool:
    """Whether `total` finished, running or queued trials came before this one."""
    return sum(t.number < trial.number for t in study.get_trials(deepcopy=False, states=CLAIMED)) >= total


def copy_of(study: optuna.Study, trial: optuna.Trial) -> int | None:
    """The earlier trial holding the same queued recipe, when two workers queued it at once (Optuna's
    skip_if_exists is not atomic across machines); a retry is a copy only of another live or finished retry of the
    same trial (a retry of a retry follows a failed one)."""
    trials = study.get_trials(deepcopy=False)
    mine = next(t for t in trials if t.number == trial.number)
    retry_of = mine.system_attrs.get("failed_trial")
    if retry_of is not None:  # two workers that queued one interrupted trial again at once: the later is a copy
        return next((t.number for t in trials if t.number < trial.number and t.state != TrialState.FAIL
                     and t.system_attrs.get("failed_trial") == retry_of), None)
    queued = mine.system_attrs.get("fixed_params")
    if not queued:
        return None
    return next((t.number for t in trials if t.number < trial.number and "failed_trial" not in t.system_attrs
                 and t.system_attrs.get("fixed_params") == queued), None)


def run_one(study: optuna.Study, objective: Callable[[optuna.Trial], float], catch: tuple[type[Exception], ...],
            callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] | None = None) -> None:
    """`study.optimize` for one trial. A trial another worker took for dead (its heartbeats came too late) and
    finished meanwhile is no longer this worker's: telling it raises in Optuna (UpdateFinishedTrialError, or a
    ValueError its bookkeeping turns into an AssertionError), which here ends the call quietly."""
    ended: list[int] = []

    def tracked(trial: optuna.Trial) -> float:
        try:
            value = objective(trial)
        except (optuna.TrialPruned, *catch):
            ended.append(trial.number)
            raise
        ended.append(trial.number)
        return value

    try:
        study.optimize(tracked, n_trials=1, catch=catch, callbacks=callbacks)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError, AssertionError):
        mine = study.get_trials(deepcopy=False)
        if not ended or next(t.state for t in mine if t.number == ended[0]) == TrialState.RUNNING:
            raise


@dataclass
class Worker:
    """Runs `objective` trial by trial, telling `say` of each one this worker finishes."""

    study: optuna.Study
    objective: Callable[[optuna.Trial], float]
    total: int
    poll_s: float
    say: Callable[[FrozenTrial], None]
    ran: list[FrozenTrial] = field(default_factory=list)

    def guarded(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", WORKER)
        if is_surplus(self.study, trial, self.total):
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"the study already had {self.total} trials")
        earlier = copy_of(self.study, trial)
        if earlier is not None:
            trial.set_user_attr("surplus", True)
            trial.set_user_attr("copy_of", earlier)
            raise SurplusTrial(f"trial {earlier} holds the same queued recipe")
        return self.objective(trial)

    def finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not trial.user_attrs.get("surplus"):
            self.ran.append(trial)
            self.say(trial)

    def run(self, timeout_s: float | None) -> None:
        """Until the study holds `total` finished trials, or `timeout_s` has passed (the trial then running
        finishes first)."""
        deadline = time.monotonic() + (timeout_s if timeout_s else math.inf)
        while time.monotonic() < deadline:
            optuna.storages.fail_stale_trials(self.study)  # a dead worker's trial: FAIL, and queued again
            if count(self.study, FINISHED) >= self.total:
                return
            if count(self.study, BUSY) >= self.total:  # the rest runs elsewhere, unless its worker dies
                time.sleep(self.poll_s)
                continue
            run_one(self.study, self.guarded, (Exception,), [self.finished])
            self.check_failures()

    def settle(self, say: Callable[[str], None]) -> None:
        """Wait for the trials other workers are running now (started within their budget, so the study's to
        judge), not for those they start later, so that the best recipe is chosen from all of them; a dead worker's
        trial is failed once its heartbeat is stale."""
        started = {t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        told = False
        while True:
            optuna.storages.fail_stale_trials(self.study)
            running = started & {t.number for t in self.study.get_trials(deepcopy=False,
                                                                          states=(TrialState.RUNNING,))}
            if not running:
                return
            if not told:
                say(f"waiting for {len(running)} trial(s) other workers are running before choosing the best "
                    "recipe")
                told = True
            time.sleep(self.poll_s)

    def check_failures(self) -> None:
        """A worker whose last trials all failed stops, naming the failure, instead of failing forever."""
        last = self.ran[-MAX_FAILED_IN_A_ROW:]
        if len(last) == MAX_FAILED_IN_A_ROW and all(t.state == TrialState.FAIL for t in last):
            raise UserError(f"tune: {MAX_FAILED_IN_A_ROW} trials in a row failed, the last with "
                            f"{last[-1].user_attrs.get('error', 'an error')}")

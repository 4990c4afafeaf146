"""Opening the study every worker shares, and refusing a worker that would mix another experiment into it: a
different search space, a different fixed config, or a different teacher than the study was started with."""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Callable

import optuna
import torch.nn as nn
from optuna.trial import FrozenTrial, TrialState

from edgedistill.cli.tune.space import SearchSpace, space_difference
from edgedistill.cli.tune.storage import redacted
from edgedistill.cli.tune.worker import CLAIMED
from edgedistill.config import ExperimentConfig
from edgedistill.data import DataSplits
from edgedistill.data.rows import data_digest
from edgedistill.errors import UserError
from edgedistill.roles import Role

# where things are rather than what is trained: two machines may differ here and still run one study
LOCAL_KEYS = ("name", "accelerator", "device_catalog", "data.path", "data.loader_workers", "teacher.checkpoint",
              "distill.method", "tracking")


UID_PREFIX = "uid "  # each folder's own key in its study's user attributes ("uid <hex>"), never overwritten

PRUNING = ("A trial whose best validation accuracy so far falls in the bottom quarter of completed trials at the "
           "same epoch, from half its epochs on, is pruned there.")


def pruner(epochs: int) -> optuna.pruners.BasePruner:
    """PRUNING, once 3 trials have completed (never at the last epoch: trial.ReportEpochs). Mid-training
    validation is noisy: under a one-cycle schedule it moves by points from epoch to epoch and good recipes rank
    only as the rate anneals. The median after a third of the epochs cut all 8 new trials of a 30-epoch
    Fashion-MNIST study, the config's own KD recipe among them (docs/benchmarks.md, fashion_mnist_tune_30_w64_12)."""
    return optuna.pruners.PercentilePruner(75.0, n_startup_trials=3, n_warmup_steps=epochs // 2)  # keeps the top 75%


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def fixed_config(cfg: ExperimentConfig, space: SearchSpace, data: DataSplits) -> dict[str, object]:
    """What every trial of the study holds fixed: the config less its searched and local keys, and a digest of
    the training and validation data (and of the unlabelled pool, when there is one)."""
    searched = {d.key for m in space.methods for d in space.dims(m)}
    flat = {k: v for k, v in _flat(cfg.model_dump(mode="json")).items()
            if k not in searched and not k.startswith(LOCAL_KEYS)}
    h = hashlib.sha256(data_digest(data.x_train))
    for part in (data.y_train, data.y_val):
        h.update(part.tobytes())
    h.update(data_digest(data.x_val))
    if data.x_pool is not None:  # the unlabelled pool the trials' students also learn from
        h.update(data_digest(data.x_pool))
    return flat | {"data (training and validation rows)": h.hexdigest()[:16]}


def config_difference(stored: dict, mine: dict) -> str | None:
    for key in sorted(set(stored) | set(mine)):
        if stored.get(key, "absent") != mine.get(key, "absent"):
            return f"{key} is {stored.get(key, 'absent')!r} there, {mine.get(key, 'absent')!r} here"
    return None


def weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def open_study(storage: optuna.storages.BaseStorage, name: str, url: str, space: SearchSpace, fixed: dict,
               epochs: int, instead: str = "another --study-name") -> optuna.Study:
    """Create the study, or join it when its search space and fixed config are this worker's (`instead`: what the
    user may change instead, as the refusal says). The sampler is not seeded: workers started together would draw
    the same recipes."""
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                                    sampler=optuna.samplers.TPESampler(constant_liar=True), pruner=pruner(epochs))
    except ValueError as exc:  # a study of that name optimised in another direction, or with several objectives
        raise UserError(f"--study-name {name}: {redacted(url)} holds a study of that name that is not an "
                        f"edgedistill tune study ({exc}); choose {instead}") from None
    where = f"--study-name {name} in {redacted(url)}"
    attrs = study.user_attrs
    if "space" not in attrs:
        if study.get_trials(deepcopy=False):
            raise UserError(f"{where}: holds trials but no edgedistill search space; choose {instead}")
        study.set_user_attr("space", space.describe())
        study.set_user_attr("fixed_config", json.loads(json.dumps(fixed)))
        attrs = study.user_attrs  # read back: of two workers starting at once, the later write is the study's
    why = space_difference(attrs["space"], space.describe())
    if why:
        raise UserError(f"{where}: the study was started with another search space: {why}; use the same "
                        f"--methods and config, or {instead}")
    why = config_difference(attrs.get("fixed_config", {}), json.loads(json.dumps(fixed)))
    if why:
        raise UserError(f"{where}: the study trains another experiment: {why}; use the config it was started "
                        f"with, or {instead}")
    return study


def new_uid(study: optuna.Study) -> str:
    """A uid of this folder's own, recorded in the study: a key per folder, so two workers that join at once never
    overwrite each other's, and a study made again under the same name holds none of the old ones."""
    uid = uuid.uuid4().hex
    study.set_user_attr(UID_PREFIX + uid, True)
    return uid


def study_uids(storage: optuna.storages.BaseStorage, name: str) -> set[str] | None:
    """The folder uids the study of that name holds, without creating it; None when the database holds none."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return {k.removeprefix(UID_PREFIX) for k in storage.get_study_user_attrs(study_id) if k.startswith(UID_PREFIX)}


def queued_from_config(study: optuna.Study) -> set[str]:
    """The methods whose config recipe the study already holds (queued, running or finished)."""
    return {t.system_attrs.get("fixed_params", t.params).get("method") for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("from_config")}


def start_from_config(study: optuna.Study, space: SearchSpace, base: dict, total: int) -> None:
    """Queue the recipe the config gives each searched method ahead of the sampler's draws, once per method and
    study (the first worker's config: another worker's may set other values for searched keys) and within its
    total: the search starts from what the user would run untuned (in place of some of TPE's random start-up
    draws), and tune.md shows whether it beat that."""
    queued = queued_from_config(study)
    for method in space.methods:
        if len(study.get_trials(deepcopy=False, states=CLAIMED)) >= total:
            return
        if method in queued:
            continue
        study.enqueue_trial(space.config_params(base, method), user_attrs={"from_config": True},
                            skip_if_exists=True)


INTERRUPTED = "interrupted"  # a file a trial's folder holds while Ctrl-C has stopped it and it waits to run again
# the trials a retry follows: after a dead worker (Optuna's, which counts them against storage.MAX_RETRY) or Ctrl-C
INTERRUPTS = "interrupt_history"
RETRIES = ("retry_history", INTERRUPTS)


def requeue_interrupted(study: optuna.Study, folder_of: Callable[[FrozenTrial], Path]) -> None:
    """Queue again, once, each trial Ctrl-C stopped in this folder, as Optuna's heartbeat callback queues a dead
    worker's: under its first number, so its retry resumes from the epochs its folder holds, and with its recipe
    (the config's own recipe stays queued)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for key in RETRIES for n in t.system_attrs.get(key, [])}
    for t in trials:
        if (t.state != TrialState.FAIL or t.number in retried or t.user_attrs.get("surplus")
                or not (folder_of(t) / INTERRUPTED).is_file()):
            continue
        system = {"failed_trial": t.number, **t.system_attrs}
        system[INTERRUPTS] = [*t.system_attrs.get(INTERRUPTS, []), t.number]
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=t.params, distributions=t.distributions, system_attrs=system,
            user_attrs={k: v for k, v in t.user_attrs.items() if k not in ("error", "worker")}))


def check_teacher(study: optuna.Study, teacher: nn.Module, where: str) -> None:
    """Every worker distils from one teacher: the first records its weights' digest, the others must match it."""
    digest = weights_digest(teacher)
    if Role.TEACHER.value not in study.user_attrs:
        study.set_user_attr(Role.TEACHER.value, {"sha256": digest, "where": where})
    recorded = study.user_attrs[Role.TEACHER.value]
    if recorded["sha256"] != digest:
        raise UserError(f"teacher: this worker's teacher differs from the study's, made at {recorded['where']}; "
                        "copy that teacher file here and set teacher.checkpoint to it, or give every worker one --out "
                        "on a shared disk")


def teacher_elsewhere(study: optuna.Study) -> str | None:
    """Where the study's teacher was made, when a worker already made one."""
    recorded = study.user_attrs.get(Role.TEACHER.value)
    return recorded["where"] if recorded else None

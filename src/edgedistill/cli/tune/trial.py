"""One trial: the KD student trained by the pipeline's own train_role with the trial's recipe, from the study's one
teacher, scored on validation after every epoch so the pruner can stop a weak recipe early.

Everything a trial writes is in trials/<number>/ of the study folder. A trial whose worker died, or that Ctrl-C
stopped, is retried under its first number, so the retry resumes from the last epoch that trial finished.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, NoReturn

import optuna
from filelock import FileLock
from optuna.trial import FrozenTrial

from edgedistill import distributed
from edgedistill.atomic import atomic_write_text, read_json_object
from edgedistill.cli.tune.rescore import Unit
from edgedistill.cli.tune.study import INTERRUPTED
from edgedistill.cli.tune.space import SearchSpace, eligible, mixes_allowed, recipe_config, recipe_space
from edgedistill.config import validate_config
from edgedistill.distill import METHODS
from edgedistill.distill.method import Method
from edgedistill.distill.taps import resolve_taps
from edgedistill.errors import UserError, first_line
from edgedistill.models.build import build_model
from edgedistill.pipeline.state import Run
from edgedistill.pipeline.training import STATE_DIR, n_taught, sample, teacher_cache, train_role
from edgedistill.progress import Callback
from edgedistill.roles import Role, Side
from edgedistill.teachers import is_external
from edgedistill.tracking import Tracking, config_params
from edgedistill.train.cache import TeacherCache
from edgedistill.train.method_setup import set_up_method
from edgedistill.train.resume import TrainResult


class ReportEpochs(Callback):
    """Each epoch's validation accuracy goes to the trial; the pruner may stop it there, before its last epoch
    (a trial that trained to the end is complete)."""

    def __init__(self, trial: optuna.Trial, epochs: int):
        self.trial, self.epochs = trial, epochs

    def on_start(self, history: list[dict]) -> None:
        for row in history:  # a retried trial resumed: the epochs its first run finished
            self.trial.report(row["val_accuracy"], row["epoch"])

    def on_epoch(self, row: dict) -> None:
        self.trial.report(row["val_accuracy"], row["epoch"])
        if row["epoch"] < self.epochs and self.trial.should_prune():
            raise optuna.TrialPruned(f"validation {row['val_accuracy']:.4f} at epoch {row['epoch']}")


def features_unmet(run: Run) -> str | None:
    """A feature or relation method reads taps of a torch teacher and of the student."""
    if is_external(run.cfg.teacher.model):
        return f"the teacher ({run.cfg.teacher.model}) is not a torch model, so it has no feature taps"
    student = build_model(run.cfg.student, Side.STUDENT, run.data, run.cfg.seed + 1)
    try:
        resolve_taps(student, run.cfg.distill.student_taps, Side.STUDENT)
        resolve_taps(run.loaded_teacher, run.cfg.distill.teacher_taps, Side.TEACHER)
    except UserError as exc:
        return str(exc)
    return None


# what tune checks of a method's needs; what else a method cannot serve, it says itself (its `refuse`)
NEEDS: dict[str, Callable[[Run], str | None]] = {"logits": lambda run: None, "features": features_unmet}


def asked_mixes(run: Run, mixes: list[str] | None) -> tuple[str, ...] | None:
    """The mixes --mix asks for, each one the data allows; None searches every allowed one."""
    if not mixes:
        return None
    allowed = mixes_allowed(bool(run.data.text), len(run.data.input_shape) < 2)
    wrong = next((m for m in mixes if m not in allowed), None)
    if wrong:
        raise UserError(f"--mix: {wrong!r} is not a mix this data allows; choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(mixes))


def search_space(run: Run, asked: list[str] | None, mixes: list[str] | None = None) -> SearchSpace:
    """The registered methods (or those asked for) whose needs this run meets, and the recipe knobs its data
    allows (the mix limited to --mix when given)."""
    unknown = [m for m in asked or [] if m not in METHODS]
    if unknown:
        raise UserError(f"--methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    mix = asked_mixes(run, mixes)
    offer = run.cfg.distill.offer(processes=distributed.world_size(), rows=n_taught(run),
                                  classes=run.data.num_classes)

    def unmet(need: str) -> str | None:
        return NEEDS[need](run) if need in NEEDS else None

    space = replace(eligible(list(dict.fromkeys(asked or METHODS)), unmet, offer),
                    recipe=recipe_space(bool(run.data.text), len(run.data.input_shape) < 2, mix))
    if asked and space.excluded:
        name, why = next(iter(space.excluded.items()))
        raise UserError(f"--methods: {name} cannot run here: {why}")
    if not space.methods:
        raise UserError(f"tune: no distillation method can run with this teacher and data ({space.excluded})")
    return space


@dataclass
class Trials:
    """What every trial of this worker shares: the prepared run (teacher trained, test split sealed), the study
    folder, the base config and the space."""

    run: Run
    out: Path
    base: dict
    space: SearchSpace

    def recipe(self, trial: optuna.Trial):
        method, settings = self.space.sample(trial)
        trial.set_user_attr("settings", settings)
        return validate_config(recipe_config(self.base, method, settings), f"trial {trial.number}")

    def __call__(self, trial: optuna.Trial) -> float:
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        folder = trial_folder(self.out, frozen)
        (folder / INTERRUPTED).unlink(missing_ok=True)
        try:
            run = replace(self.run, cfg=self.recipe(trial), run_dir=folder, progress=False, records={},
                          test_logits={})
            with tracked_trial(self.run.tracking, trial, run) as run.tracking:
                result = train_recipe(run, self.out, ReportEpochs(trial, run.cfg.student.train.epochs))
        except FloatingPointError as exc:  # a recipe that diverges is a weak recipe, stopped where it diverged
            trial.set_user_attr("error", str(exc))
            raise optuna.TrialPruned(f"diverged: {exc}") from None
        except optuna.TrialPruned:
            shutil.rmtree(folder / STATE_DIR, ignore_errors=True)
            raise
        except Exception as exc:
            trial.set_user_attr("error", first_line(exc))
            raise
        except KeyboardInterrupt:
            pass  # stopped below, outside this block, so the interrupted call's frames can be let go
        else:
            shutil.rmtree(folder / STATE_DIR, ignore_errors=True)
            trial.set_user_attr("best_epoch", result.best_epoch)
            return result.best_val_accuracy
        stop_interrupted(folder)

    def at_seed(self, unit: Unit, method: str, settings: dict, folder: Path) -> float:
        """A trial's recipe trained to its last epoch at another seed (another student init, batch order and bank
        of views), on the same split, teacher and validation rows; its best validation accuracy, 0 where it
        diverged (a recipe that diverges at one seed is not the one to choose)."""
        done = folder / "result.json"  # a worker that died after training, before the study heard of it
        if done.is_file():
            return finished_accuracy(done)
        raw = recipe_config(self.base, method, settings) | {"seed": unit.seed}
        raw["data"]["split_seed"] = self.run.cfg.split_seed
        cfg = validate_config(raw, folder.name)
        run = replace(self.run, cfg=cfg, run_dir=folder, progress=False, records={}, test_logits={})
        with tracked_unit(self.run.tracking, unit, run) as run.tracking:
            try:
                accuracy = train_recipe(run, self.out, base_seed=self.run.cfg.seed).best_val_accuracy
            except FloatingPointError:
                accuracy = 0.0
            run.tracking.log_metrics({"best_val_accuracy": accuracy})
        atomic_write_text(done, json.dumps({"best_val_accuracy": accuracy}))
        shutil.rmtree(folder / STATE_DIR, ignore_errors=True)  # kept when interrupted: the next worker resumes it
        return accuracy


def finished_accuracy(done: Path) -> float:
    """A finished rescoring unit's best validation accuracy, as its result.json holds it."""
    accuracy = (read_json_object(done) or {}).get("best_val_accuracy")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1:
        raise UserError(f"{done} is damaged (no best_val_accuracy in 0..1); delete {done.parent} and run tune again to "
                        "train that recipe at that seed again")
    return float(accuracy)


def trial_folder(out: Path, trial: FrozenTrial) -> Path:
    """trials/<number>/, a retry's under the number of the trial it retries, so that it resumes that one's epochs."""
    return out / "trials" / f"{trial.system_attrs.get('failed_trial', trial.number):04d}"


def stop_interrupted(folder: Path) -> NoReturn:
    """Ctrl-C in a trial: its folder says so (study.requeue_interrupted queues it again) and KeyboardInterrupt goes
    on once the interrupted call's frames are collected. Interrupted inside a database call, they held SQLite's
    write lock, on which Optuna's failing of the trial and the heartbeat thread then waited."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INTERRUPTED).touch()
    gc.collect()
    raise KeyboardInterrupt


@contextlib.contextmanager
def tracked_trial(study: Tracking, trial: optuna.Trial, run: Run) -> Iterator[Tracking]:
    """The trial as a child of the study's tracked run (when tracking is on): its config as parameters, the KD
    student's curve, and how it ended as the `optuna.state` tag (a diverged recipe is pruned, as the study has it)."""
    if not study:
        yield study
        return
    run.run_dir.mkdir(parents=True, exist_ok=True)
    params = config_params(run.cfg) | {"trial": trial.number}
    child = study.start_child(run.run_dir, f"trial {trial.number}", params)
    state, status = "fail", "FAILED"
    try:
        yield child
        state, status = "complete", "FINISHED"
    except (optuna.TrialPruned, FloatingPointError):
        state, status = "pruned", "FINISHED"
        raise
    finally:
        child.set_tags({"optuna.trial": str(trial.number), "optuna.state": state})
        child.close(status)


@contextlib.contextmanager
def tracked_unit(study: Tracking, unit: Unit, run: Run) -> Iterator[Tracking]:
    """A rescoring unit as a child of the study's tracked run (when tracking is on), beside the trials: its config
    and trial as parameters, its KD student's curve and its best validation accuracy, the number `--rescore`
    averages."""
    if not study:
        yield study
        return
    run.run_dir.mkdir(parents=True, exist_ok=True)
    child = study.start_child(run.run_dir, unit.key, config_params(run.cfg) | {"trial": unit.trial})
    status = "FAILED"
    try:
        yield child
        status = "FINISHED"
    finally:
        child.set_tags({"optuna.trial": str(unit.trial), "rescore.seed": str(unit.seed)})
        child.close(status)


def train_recipe(run: Run, out: Path, report: Callback | None = None,
                 base_seed: int | None = None) -> TrainResult:
    """The KD student of the recipe in run.cfg, as the pipeline trains it, from the shared teacher and the bank of
    views of run.cfg.seed (base_seed: the study's own seed, whose bank keeps the folder it had before rescoring)."""
    cfg = run.cfg
    student = build_model(cfg.student, Side.STUDENT, run.data, cfg.seed + 1)
    teacher = run.teacher
    method = set_up_method(cfg.distill, cfg.student.train.label_smoothing, student.to(run.accel),
                           teacher.to(run.accel), sample(run), n_taught(run))
    cache = shared_cache(run, out, method, cfg.seed if base_seed is None else base_seed) \
        if cfg.distill.cache.enabled else None
    why = cfg.distill.refusal(bank=cache is not None if cfg.distill.cache.enabled else None, run_dir=str(out))
    if why:
        raise UserError(why)
    if cache is None and method.teacher_taps:  # a pruned trial leaves its tap hooks on the teacher it used
        teacher = copy.deepcopy(teacher)
    return train_role(run, Role.STUDENT_KD, student, cfg.student, method, teacher=teacher, cache=cache,
                      callbacks=[report] if report else [])


def shared_cache(run: Run, out: Path, method: Method, base_seed: int) -> TeacherCache | None:
    """The teacher's outputs on the cached views, built once per set of taps and seed (the views are drawn from
    the seed; the study's own seed keeps the name it had before rescoring) in the study folder, under a lock per
    bank so two workers never write one bank but may build two at once, and read by every trial that needs them."""
    extra = [run.cfg.seed] if run.cfg.seed != base_seed else []
    taps = json.dumps([method.teacher_taps, method.tap_shapes, *extra])
    folder = out / "banks" / hashlib.sha256(taps.encode()).hexdigest()[:12]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f".{folder.name}.lock")):
        return teacher_cache(replace(run, run_dir=folder), method)

"""`--seeds N`: the same experiment N times, to tell a distillation gain from seed noise.

The teacher is trained once (first seed) and loaded by the others; the validation split is held fixed, so the
seeds differ only in the students' initial weights, batch order and augmentation. Each seed is an ordinary run
folder (out/seed_<s>); out/seeds.json and out/seeds.md hold the mean and standard deviation of every model's test
accuracy and F1, and the KD gain over scratch paired by seed.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scipy import stats

from edgedistill.atomic import atomic_write_text
from edgedistill.config import SEED_MAX, ExperimentConfig, resolve_config, validate_config
from edgedistill.errors import UserError
from edgedistill.pipeline.inputs import (INPUTS_FILE, MAX_SEEDS, SeedsPlan, absolute_paths, read_inputs, record_inputs,
                                         run_inputs, verify_inputs, write_inputs)
from edgedistill.report.markdown import method_label, rows_by_role, rows_sentence
from edgedistill.roles import Role, Side, label
from edgedistill.runlock import RunLock
from edgedistill.teachers import is_external

if TYPE_CHECKING:
    from edgedistill.tracking import Tracking


@dataclass
class SeedsResult:
    out_dir: Path
    summary: dict
    table: str
    first: dict  # the first seed's metrics: its KD student is the file to hand over


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def paired_test(gains: list[float]) -> dict:
    """Paired t-test of the per-seed gains against zero, and the 95% confidence interval of their mean."""
    n = len(gains)
    if n < 2:
        return {"t": None, "p_value": None, "ci95": None}
    mean, std = statistics.fmean(gains), statistics.stdev(gains)
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)
    if std == 0:
        return {"t": None, "p_value": 0.0 if mean != 0 else 1.0, "ci95": [mean, mean]}
    t = mean / (std / math.sqrt(n))
    return {"t": t, "p_value": float(2 * stats.t.sf(abs(t), n - 1)), "ci95": [mean - half, mean + half]}


def noise_verdict(p_value: float | None, mean_gain: float, scratch_std: float) -> int:
    """+1 a gain beyond the noise, -1 a loss beyond it, 0 inside it: significant (p < 0.05) and larger than the
    scratch runs' std."""
    if p_value is None or p_value >= 0.05 or abs(mean_gain) <= scratch_std:
        return 0
    return 1 if mean_gain > 0 else -1


def paired_gain(gains: list[float], scratch_std: float) -> dict:
    """A method's gains over its scratch control, paired by seed: mean ± std, the paired t-test, and the verdict
    (+1 beyond the noise, -1 a loss beyond it, 0 inside it). `--seeds` and the method table both use this."""
    g = mean_std(gains)
    test = paired_test(gains)
    return g | test | {"verdict": noise_verdict(test["p_value"], g["mean"], scratch_std)}


def summarize(runs: list[dict]) -> dict:
    """Per role: test accuracy and macro F1 over seeds; the KD gain paired by seed, with a paired t-test.

    A gain counts as beyond the noise when it is significant (p < 0.05) and larger than the scratch runs' std."""
    roles = [r for r in runs[0]["models"] if all(r in m["models"] for m in runs)]
    models = {r: {"accuracy": mean_std([m["models"][r]["test"]["accuracy"] for m in runs]),
                  "f1_macro": mean_std([m["models"][r]["test"]["f1_macro"] for m in runs]),
                  "params": runs[0]["models"][r]["params"]} for r in roles}
    scratch_std = models[Role.STUDENT_SCRATCH]["accuracy"]["std"]
    gain = paired_gain([m["comparison"]["kd_gain_over_scratch"] for m in runs], scratch_std)
    verdict = gain.pop("verdict")
    return {"seeds": [m["config"]["seed"] for m in runs], "models": models, "kd_gain_over_scratch": gain,
            "gain_exceeds_noise": verdict == 1, "loss_exceeds_noise": verdict == -1,
            "scratch_std": scratch_std, "distill": runs[0]["models"][Role.STUDENT_KD].get("distill"),
            "rows_per_epoch": rows_by_role(runs[0]["models"])}


def seeds_table(summary: dict) -> str:
    n = len(summary["seeds"])
    rows = [f"| model | params | test acc (mean ± std, {n} seeds) | macro F1 (mean ± std) |", "|---|---|---|---|"]
    for role, m in summary["models"].items():
        a, f = m["accuracy"], m["f1_macro"]
        rows.append(f"| {label(role)}{' (trained once)' if role == Role.TEACHER else ''} | {m['params']:,} | {100 * a['mean']:.2f}% ± {100 * a['std']:.2f} "
                    f"| {f['mean']:.4f} ± {f['std']:.4f} |")
    g = summary["kd_gain_over_scratch"]
    method = method_label(summary["distill"]) if summary["distill"] else "-"
    if summary["gain_exceeds_noise"]:
        verdict = "a gain beyond the noise"
    elif summary["loss_exceeds_noise"]:
        verdict = "a loss beyond the noise: distillation hurt this student"
    else:
        verdict = "inside the noise (not significant at p < 0.05, or no larger than the scratch runs' std)"
    test = (f", paired t-test p = {g['p_value']:.3f}, 95% interval [{100 * g['ci95'][0]:+.2f}, "
            f"{100 * g['ci95'][1]:+.2f}]" if g.get("ci95") else "")
    pool = summary.get("rows_per_epoch") or {}
    seen = f"\n{rows_sentence(pool)}" if any(r["unlabeled"] for r in pool.values()) else ""
    return ("\n".join(rows) + f"\n\nKD gain over scratch ({method}), paired by seed: {100 * g['mean']:+.2f} ± "
            f"{100 * g['std']:.2f} points{test}: {verdict}.{seen}")



def check_seed_count(n: int, first_seed: int) -> None:
    """--seeds N within what a comparison needs and what numpy and scikit-learn accept as a seed (0..2**32 - 1)."""
    if n < 2:
        raise UserError(f"--seeds {n}: give at least 2 seeds, or leave --seeds out for one run")
    if n > MAX_SEEDS:
        raise UserError(f"--seeds {n}: at most {MAX_SEEDS} (each seed is a whole run)")
    if first_seed + n - 1 > SEED_MAX:
        raise UserError(f"--seeds {n}: seeds {first_seed}..{first_seed + n - 1} pass {SEED_MAX}, the largest seed "
                        "numpy and scikit-learn accept; lower seed or --seeds")


def run_seeds(config: ExperimentConfig | dict | str | Path | None, n: int, out_dir: str | Path | None = None,
              overrides: list[str] | None = None, overwrite: bool = False, progress: bool = True) -> SeedsResult:
    """The seeds one after another in out/seed_<s>, with out locked for the whole time."""
    from edgedistill.pipeline.rundir import claim_existing

    check_seed_count(n, 0)
    cfg = absolute_paths(resolve_config(config, overrides))
    check_seed_count(n, cfg.seed)
    out = Path(out_dir) if out_dir else Path("runs") / f"{cfg.name}-seeds{n}"
    lock = claim_existing(out, "--out") or RunLock(out)
    try:
        return _seeds_locked(cfg, config, n, out, overwrite, progress, lock)
    finally:
        lock.release()


def _seeds_locked(cfg: ExperimentConfig, config: object, n: int, out: Path, overwrite: bool, progress: bool,
                  lock: RunLock) -> SeedsResult:
    from edgedistill.pipeline.rundir import prepare_run_dir, refuse_inputs_in_the_way
    from edgedistill.tracking import config_params, open_tracking

    inputs = run_inputs(cfg, config if isinstance(config, (str, Path)) else None)
    record = record_inputs(inputs)
    if overwrite:
        refuse_inputs_in_the_way(out, inputs, seeds=True)
    tracking = open_tracking(cfg)  # the parent run: one child per seed, the summary on it
    out = prepare_run_dir(out, overwrite, tuple(i.path for i in inputs), lock)
    write_inputs(out, record.model_copy(update={"seeds": SeedsPlan(n=n, config=cfg.model_dump(mode="json"))}))
    with tracking.running(out, config_params(cfg)):
        summary, table, runs = _run_each_seed(cfg, n, out, progress, tracking)
        tracking.log_seeds(summary, out, ["seeds.md", "seeds.json"])
    return SeedsResult(out, summary, table, runs[0])


def is_seeds_folder(out: Path) -> bool:
    """A --seeds folder holds inputs.json but no config.yaml of its own (each seed_N/ has one); a run's or a tune
    study's folder has a config.yaml, and --resume on it is checked as a run's."""
    return out.is_dir() and not (out / "config.yaml").exists() and (out / INPUTS_FILE).exists()


def resume_seeds(out_dir: str | Path, progress: bool = True) -> SeedsResult:
    """Continue a killed --seeds run: finished seeds are read back, the unfinished one resumes from its last epoch,
    the missing ones run, then the summary is written; under the config and inputs it started with."""
    from edgedistill.pipeline.rundir import claim_existing
    from edgedistill.tracking import config_params, open_tracking

    out = Path(out_dir)
    if (out / "seeds.json").exists():
        raise UserError(f"--resume {out}: those seeds have finished; seeds.md holds their summary")
    record = read_inputs(out, "--resume")
    if record is None or record.seeds is None:
        raise UserError(f"--resume {out}: is not a --seeds folder (its inputs.json names no seeds)")
    plan = record.seeds
    cfg = validate_config(plan.config, f"--resume {out}: {out / INPUTS_FILE} (seeds.config)")
    lock = claim_existing(out, "--resume")
    try:  # once the first seed has finished, the others read its copy of the teacher, not the teacher's files
        taught = (out / f"seed_{cfg.seed}" / "metrics.json").is_file()
        verify_inputs(out, "--resume", ("data", "device") if taught else ("data", Side.TEACHER, "device"))
        tracking = open_tracking(cfg, out)
        with tracking.running(out, config_params(cfg), resume=True):
            summary, table, runs = _run_each_seed(cfg, plan.n, out, progress, tracking, resume=True)
            tracking.log_seeds(summary, out, ["seeds.md", "seeds.json"])
    finally:
        if lock is not None:
            lock.release()
    return SeedsResult(out, summary, table, runs[0])


def _seed_metrics(seeded: dict, folder: Path, progress: bool, resume: bool) -> dict:
    """One seed's run; on --resume, a finished seed is read back and an unfinished one continued."""
    from edgedistill.pipeline import run
    from edgedistill.report import read_metrics

    if resume and (folder / "metrics.json").is_file():
        return read_metrics(folder)  # checked: a hand-edited one is one line naming it
    if resume and (folder / "config.yaml").is_file():
        return run(None, out_dir=folder, progress=progress, resume=True).metrics
    return run(seeded, out_dir=folder, progress=progress, overwrite=resume).metrics  # a start killed early


def _run_each_seed(cfg: ExperimentConfig, n: int, out: Path, progress: bool,
                   tracking: Tracking, resume: bool = False) -> tuple[dict, str, list[dict]]:
    """Seed by seed, each tracked as a child of the seeds' run; then seeds.json and seeds.md."""
    from edgedistill.tracking import children_of

    base = cfg.model_dump(mode="json")
    base["data"]["split_seed"] = cfg.split_seed
    runs = []
    for i in range(n):
        seeded = json.loads(json.dumps(base)) | {"seed": cfg.seed + i}
        if i > 0:  # the first seed's teacher, and its searched student when student: auto, for every seed
            verify_inputs(out, "--seeds", ("data", "device"))  # what the first seed read (its teacher: the copy)
            first = out / f"seed_{cfg.seed}"
            if cfg.teacher.model == "onnx":  # the copy the first seed kept: a file edited meanwhile cannot mix in
                seeded[Side.TEACHER]["args"]["path"] = str(first / "teacher.onnx")
            elif not is_external(cfg.teacher.model):
                seeded[Side.TEACHER]["checkpoint"] = str(first / "teacher.pt")
            seeded["deploy"]["enabled"] &= cfg.deploy.every_seed
            if runs[0].get("student_search"):
                seeded[Side.STUDENT] |= {"model": runs[0]["student_search"]["family"],
                                      "args": runs[0]["student_search"]["args"]}
        with children_of(tracking):
            runs.append(_seed_metrics(seeded, out / f"seed_{cfg.seed + i}", progress, resume))
    summary = summarize(runs)
    table = seeds_table(summary)
    atomic_write_text(out / "seeds.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "seeds.md", f"# {cfg.name}: {n} seeds\n\n{table}\n")
    return summary, table, runs

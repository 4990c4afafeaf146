"""Deploying a trained model: export it to the device's formats, score each file through its own runtime, and
record a failure as one line (the traceback in the run's library log) rather than lose the training."""
from __future__ import annotations

import errno
import logging
import traceback

import numpy as np
import torch.nn as nn

from edgedistill.config import ExperimentConfig
from edgedistill.deploy import (DeployPlan, DeviceProfile, NoFormat, Unrunnable, check_input_bits, deploy_model,
                                early_fit_check, reach_check)
from edgedistill.deploy.backends import parse_format
from edgedistill.deploy.fit import fit_sentence, latency_warning
from edgedistill.errors import UserError, first_line
from edgedistill.errors import strip_ansi
from edgedistill.pipeline.state import Run
from edgedistill.progress import emit
from edgedistill.quiet import current_library_log
from edgedistill.roles import Role

log = logging.getLogger("edgedistill")
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}


def early_fit_warning(cfg: ExperimentConfig, probe: nn.Module, run_data, plan: DeployPlan) -> dict:
    """Before any training: can the device's runtime run the configured (untrained) student, and would it fit?
    A student the runtime cannot run stops the run (deploy.required); one that overflows is warned about."""
    profile = plan.device
    x = run_data.x_train[:64]
    try:
        check_input_bits(probe, run_data.input_shape, x, plan.input_bits)
        verdict = early_fit_check(probe, run_data.input_shape, x, profile, list(plan.formats), plan.input_bits)
    except UserError:
        raise
    except Unrunnable as exc:
        refuse_or_warn(cfg, exc, profile)
        verdict = {"error": str(exc)}
    except Exception as exc:  # a bug of the check itself must not stop a run
        log.warning("could not check the student's fit before training (%s)", first_line(exc))
        return {"error": first_line(exc)}
    else:
        warn_fit(cfg, profile, verdict)
    check_other_formats(cfg, probe, run_data.input_shape, x, plan)
    return verdict


def refuse_or_warn(cfg: ExperimentConfig, exc: Unrunnable, profile: DeviceProfile) -> None:
    """A format the student cannot be made in stops the run before training, or, with deploy.required false, is
    warned about in one line."""
    if cfg.deploy.required:
        raise UserError(unrunnable_message(exc, profile)) from None
    log.warning("%s; deploy.required is false, so the run trains anyway", unrunnable_message(exc, profile,
                                                                                              advice=False))


def warn_fit(cfg: ExperimentConfig, profile: DeviceProfile, verdict: dict) -> None:
    """An untrained student that overflows the device, or a latency budget nothing can check, is said now."""
    if verdict["fits"] is False:
        log.warning("student %r as %s on device %r %s", cfg.student.model, verdict["dtype"], profile.name,
                    fit_sentence(verdict))
    if (unchecked := latency_warning(profile, verdict)) is not None:
        log.warning("%s", unchecked)


def check_other_formats(cfg: ExperimentConfig, probe: nn.Module, input_shape: tuple[int, ...], x: np.ndarray,
                        plan: DeployPlan) -> None:
    """Before training: each format the student will be exported to beside the preferred one (checked above), so
    one its runtime cannot run is found now rather than after training. Only a format the user named in
    deploy.formats stops the run (under deploy.required); one of the device's own list is said, and the deliverable
    comes from the others. A runtime whose int8 file was made is not probed again for its float file."""
    if cfg.deploy.roles is not None and not {Role.STUDENT_SCRATCH, Role.STUDENT_KD} & set(cfg.deploy.roles):
        return
    runtime = {fmt: (backend.name, dtype) for fmt in {*plan.formats, plan.preferred}
               for backend, dtype in [parse_format(fmt)]}
    vouched = {runtime[plan.preferred][0]} if runtime[plan.preferred][1] == "int8" else set()
    for fmt in sorted((f for f in plan.formats if f != plan.preferred), key=lambda f: runtime[f][1] != "int8"):
        if runtime[fmt][0] in vouched:  # its int8 file was made, so its float one (no quantization) is made too
            continue
        try:
            reach_check(probe, input_shape, x, plan.device, fmt, plan.input_bits)
            if runtime[fmt][1] == "int8":
                vouched.add(runtime[fmt][0])
        except UserError:
            raise
        except Unrunnable as exc:
            line = unrunnable_message(exc, plan.device, advice=False)
            if cfg.deploy.required and fmt in (cfg.deploy.formats or ()):
                raise UserError(f"{line}. Drop {fmt} from deploy.formats, change the student to operations "
                                f"{exc.title} runs, or set deploy.required: false to train anyway") from None
            log.warning("%s; %s", line, "deploy.required is false, so the run trains anyway" if not cfg.deploy.required
                        else f"{fmt} is the device's own, not named in deploy.formats, so the other formats are made")
        except Exception as exc:  # a bug of the check itself must not stop a run
            log.warning("could not check the student as %s before training (%s)", fmt, first_line(exc))


def unrunnable_message(exc: Unrunnable, profile: DeviceProfile, advice: bool = True) -> str:
    """One line: the runtime, the op or layer it stopped at, and what to do."""
    line = f"student.model: on device {profile.name!r}, {exc}"
    if not advice:
        return line
    return (f"{line}. Change it to operations {exc.title} runs, choose a device or deploy.formats whose runtime "
            "runs it, or set deploy.required: false to train anyway")


def deploy_one(run: Run, role: Role, model: nn.Module, test_logits: np.ndarray) -> dict:
    """Export, quantize, score through each runtime, profile and fit-check one model; failures are recorded."""
    cfg, data, plan = run.cfg, run.data, run.plan
    try:
        record = deploy_model(model, str(role), data.input_shape, run.run_dir / "export", data, test_logits,
                              data.x_train[:cfg.deploy.calibration_samples], plan.device, list(plan.formats),
                              cfg.deploy.latency_runs, plan.input_bits)
    except Exception as exc:  # a failed export must not throw away hours of training
        if (env := environment_cause(exc)) is not None:
            raise env from exc  # a full disk is the machine's fault: the run stays unfinished and resumable
        record = {"error": str(exc), "failed": exc.failed} if isinstance(exc, NoFormat) else \
            {"error": str(exc) if isinstance(exc, Unrunnable) else first_line(exc)}
        log.warning("deployment of %s failed: %s (details in %s)", role, record["error"], note_failure(role, exc))
    for fmt, why in ({} if "error" in record else record["failed"]).items():
        log.warning("%s was not exported as %s: %s; the other formats were", role, fmt, why)
    emit("deployed", role=str(role), ok="error" not in record)
    return record


def environment_cause(exc: BaseException) -> OSError | None:
    """The OSError of the machine (full disk, read-only, I/O) behind an exporter's own exception, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in ENVIRONMENT_ERRNOS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def note_failure(role: Role, exc: BaseException) -> str:
    """The whole failure (exporter dumps included) goes to the run's library log; the terminal gets one line."""
    path = current_library_log()
    if path is None:
        return "the traceback"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"--- deployment of {role} failed ---\n")
        fh.write(strip_ansi("".join(traceback.format_exception(exc))))
    return str(path)


def int8_loss_points(record: dict) -> float | None:
    """Validation accuracy int8 PTQ cost in points, through the preferred int8 runtime against PyTorch fp32
    (validation, so the test set chooses nothing)."""
    formats = record.get("formats", {})
    chosen = record.get("preferred")
    if chosen not in formats or formats[chosen]["dtype"] != "int8":
        chosen = next((k for k, f in formats.items() if f["dtype"] == "int8"), None)
    if chosen is None:
        return None
    return round(100 * (record["val_accuracy_torch"] - formats[chosen]["val_accuracy"]), 6)

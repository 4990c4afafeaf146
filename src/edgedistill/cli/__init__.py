"""Thin CLI: parse arguments, call the pipeline, print. Problems the user can fix exit 2 with one line, no traceback."""
from __future__ import annotations

import json
import argparse
import logging
import os
import sys

from edgedistill.errors import UserError, environment_error, first_line
from edgedistill.errors import strip_ansi
from edgedistill.roles import Role
from edgedistill.units import human_bytes

DELIVERABLE_MISSING = 3  # the run (or export) was asked for a file a device loads and produced none


def _run_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("config", nargs="?", help="experiment YAML file")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set teacher.train.epochs=5 (repeatable)")
    r.add_argument("--out", help="run folder (default runs/<name>-<timestamp>)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out (all it holds but the files the run reads)")
    r.add_argument("--seeds", type=int, metavar="N",
                   help="run the students N times (seeds seed..seed+N-1, one teacher; N from 2 to 1000) and report "
                        "mean ± std")
    r.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run (or --seeds folder) from its last finished epoch, with the config "
                        "it was started with")
    r.add_argument("--track", action="append", choices=["mlflow", "tensorboard"], default=[],
                   help="log the run to MLflow or TensorBoard (repeatable; tracking.backends in the config)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--jsonl", action="store_true", help="progress as JSON lines on stdout, for logs and CI")


def _tune_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("config", nargs="?", help="experiment YAML file (the packaged default when none is given)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    t.add_argument("--out", help="study folder (default runs/<name>-tune); workers given one folder share it")
    t.add_argument("--trials", type=int, default=20, metavar="N",
                   help="finished trials the study holds when done, over all its workers (default 20)")
    t.add_argument("--timeout", type=float, metavar="SECONDS", help="this worker starts no trial after this long")
    t.add_argument("--storage", metavar="URL", help="the study's database, e.g. postgresql://user:password@host/db, "
                   "for workers on several machines (default: SQLite in the study folder)")
    t.add_argument("--study-name", help="the study's name in the database (default: the config's name)")
    t.add_argument("--seeds", type=int, default=3, metavar="N",
                   help="then run the best recipe and scratch over N seeds on the test split (0: tune only)")
    t.add_argument("--rescore", type=int, default=0, metavar="K",
                   help="then train the best K trials again on more seeds and choose the best mean validation "
                   "accuracy over those, when the best few lie within one seed's noise; --timeout does not stop "
                   "these runs (default 0: choose on the trials' own seed)")
    t.add_argument("--rescore-seeds", type=int, metavar="N", help="more seeds per trial for --rescore (default 2)")
    t.add_argument("--methods", metavar="A,B", help="search only these methods (default: every one that fits)")
    t.add_argument("--mix", metavar="A,B", help="search only these batch mixes, of none, mixup and cutmix (default: "
                   "every one the data allows); a mixed recipe runs its teacher live, which is slow on a CPU")
    t.add_argument("--heartbeat", type=int, default=20, metavar="SECONDS",
                   help="a trial whose worker is silent for 3 heartbeats is taken as dead and run again (default 20)")
    t.add_argument("--track", action="append", choices=["mlflow", "tensorboard"], default=[],
                   help="log the study to MLflow or TensorBoard, each trial as a child run (repeatable)")
    t.add_argument("--quiet", action="store_true", help="no progress bars or per-trial lines")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgedistill", description="Distil a large model into one that fits an edge device.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected failure")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    _run_arguments(add("run", help="run an experiment (the packaged default when no CONFIG is given)"))
    _tune_arguments(add("tune", help="find the distillation recipe for your data on validation (Optuna), then run it "
                                    "against scratch over seeds"))
    add("datasets", help="list the datasets")
    add("models", help="list the teachers and students in the zoo")
    add("methods", help="list the distillation methods (distill.method)")
    rep = add("report", help="rebuild report.md and report.html of a run from its metrics.json")
    rep.add_argument("run_dir")
    cmp_ = add("compare", help="one report across several runs")
    cmp_.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    cmp_.add_argument("--out", required=True, help="folder for report.html and compare.md")
    c = add("classify", help="classify raw strings with a text run's exported ONNX model")
    c.add_argument("onnx", help="an .onnx file from a text run's export/ folder")
    c.add_argument("texts", nargs="+", metavar="TEXT")
    e = add("export", help="export a finished run's models to other formats, without retraining")
    e.add_argument("run_dir", help="a finished run folder")
    e.add_argument("--format", dest="formats", action="append", required=True, metavar="RUNTIME-DTYPE",
                   help="e.g. tflm-int8, executorch-int8, litert-fp32, onnxruntime-int8 (repeatable)")
    e.add_argument("--role", dest="roles", action="append", metavar="ROLE",
                   help="only this model, e.g. student_kd (repeatable; every model of the run by default)")
    d = add("devices", help="list the edge device profiles")
    d.add_argument("--catalog", help="your own device YAML, added to the packaged catalog")
    return p


def cmd_run(args: argparse.Namespace) -> int:
    if "mlflow" in args.track and not args.resume and os.environ.get("RANK", "0") == "0":
        from edgedistill.mlflow_sender import start_sender

        start_sender()  # MLflow imports beside torch's import below, on the core that import leaves idle
    from edgedistill import distributed, progress
    from edgedistill.pipeline import run

    if args.resume and args.out:
        raise UserError("--resume RUN_DIR continues that folder; drop --out")
    if args.resume and args.track:
        raise UserError("--resume RUN_DIR keeps the tracking the run was started with; drop --track")
    if args.track:
        args.overrides.append(f"tracking.backends={json.dumps(args.track)}")
    progress.set_mode("jsonl" if args.jsonl else "quiet" if args.quiet else "bar")
    if args.seeds is not None or (args.resume and resumes_seeds(args.resume)):
        return cmd_seeds(args)
    try:
        result = run(args.config, out_dir=args.resume or args.out, overrides=args.overrides,
                     overwrite=args.overwrite, progress=not args.quiet, resume=bool(args.resume))
    finally:
        distributed.shutdown()
    if not distributed.is_main_process_env():
        return 0
    if not args.jsonl:
        print(result.table)
        gain = 100 * result.metrics["comparison"]["kd_gain_over_scratch"]
        print(f"\nKD gain over scratch: {gain:+.2f} points (one seed)")
        print_weak_teacher(result.metrics)
        print_deliverable(result.metrics)
        print(f"run folder: {result.run_dir}  (metrics.json, report.md, config.yaml, *.pt, export/, logs/)")
        print(f"report: {result.run_dir / 'report.html'}")
    return deliverable_exit(result.metrics)


def deliverable_exit(metrics: dict) -> int:
    """Exit 3 when the run was for a file the device loads (deploy.required) and made none; the last line says
    why. Without deploy.required the same line is a warning and the run exits 0."""
    from edgedistill.report.markdown import missing_deliverable

    missing = missing_deliverable(metrics)
    if missing is None:
        return 0
    required = metrics["config"]["deploy"].get("required", True)
    print(f"edgedistill: {'error' if required else 'warning'}: {missing}", file=sys.stderr)
    return DELIVERABLE_MISSING if required else 0


def print_weak_teacher(metrics: dict, prefix: str = "") -> None:
    """Beside the KD gain, the first reason to suspect when it is a loss: a teacher under the scratch student."""
    from edgedistill.report.markdown import weak_teacher

    if weak := weak_teacher(metrics):
        print(f"{prefix}{weak}")


def print_deliverable(metrics: dict, prefix: str = "") -> None:
    """The fit verdict and the file to hand over, when the KD student was exported."""
    if metrics["models"][Role.STUDENT_KD].get("deploy"):
        from edgedistill.deploy.fit import fit_summary

        print(prefix + fit_summary(metrics))
        print(prefix + deliverable_line(metrics))


def deliverable_line(metrics: dict) -> str:
    """The file to hand over, and its accuracy through the runtime that loads it."""
    dep = metrics["models"][Role.STUDENT_KD]["deploy"]
    if "error" in dep:
        return f"KD student: export failed ({dep['error']})"
    f = dep["formats"][dep["preferred"]]
    extra = f" + {', '.join(f['files'])}" if f.get("files") else ""
    if f.get("deliverable"):  # an NPU's file is Vela's compiled one; its accuracy is TFLM's on the uncompiled file
        return (f"deliverable: export/{f['deliverable']}{extra}: {f['deliverable_bytes']:,} bytes, compiled by Vela "
                f"for {f['npu']['accelerator']} from export/{f['file']}, which scores "
                f"{100 * f['test_accuracy']:.2f}% test accuracy through {f['runtime']} "
                f"(PyTorch fp32 {100 * metrics['models'][Role.STUDENT_KD]['test']['accuracy']:.2f}%)")
    return (f"deliverable: export/{f['file']}{extra}: {f['file_bytes']:,} bytes, "
            f"{100 * f['test_accuracy']:.2f}% test accuracy through {f['runtime']} "
            f"(PyTorch fp32 {100 * metrics['models'][Role.STUDENT_KD]['test']['accuracy']:.2f}%)")


def resumes_seeds(folder: str) -> bool:
    """Whether --resume names a --seeds folder, which the seeds runner continues whole."""
    from pathlib import Path

    from edgedistill.cli.seeds import is_seeds_folder

    return is_seeds_folder(Path(folder))


def cmd_seeds(args: argparse.Namespace) -> int:
    from edgedistill.cli.seeds import resume_seeds, run_seeds

    if args.resume and args.seeds is not None:
        raise UserError(f"--resume {args.resume} continues the run (or seeds) as it was started; drop --seeds")
    if args.resume and (args.config or args.overrides or args.overwrite):
        raise UserError("--resume RUN_DIR: give only the run folder; the seeds' config is reused as it started")
    result = resume_seeds(args.resume, progress=not args.quiet) if args.resume else \
        run_seeds(args.config, args.seeds, out_dir=args.out, overrides=args.overrides, overwrite=args.overwrite,
                  progress=not args.quiet)
    if not args.jsonl:
        print(result.table)
        first = f"{result.out_dir / ('seed_' + str(result.first['config']['seed']))}: "
        print_weak_teacher(result.first, first)
        print_deliverable(result.first, first)
        print(f"\nruns: {result.out_dir}/seed_*  summary: {result.out_dir / 'seeds.md'}, seeds.json")
    return deliverable_exit(result.first)


def names_listed(flag: str, given: str | None) -> list[str] | None:
    """A comma-separated list of names; None when the flag was not given (search them all)."""
    if given is None:
        return None
    names = [n.strip() for n in given.split(",") if n.strip()]
    if not names:
        raise UserError(f"{flag} {given!r}: names nothing; give comma-separated names, or leave {flag} out to "
                        "search them all")
    return names


def cmd_tune(args: argparse.Namespace) -> int:
    from edgedistill import progress
    from edgedistill.cli.tune import tune
    from edgedistill.cli.tune.report import best_line

    progress.set_mode("quiet" if args.quiet else "bar")
    if args.track:
        args.overrides.append(f"tracking.backends={json.dumps(args.track)}")
    methods, mixes = names_listed("--methods", args.methods), names_listed("--mix", args.mix)
    if args.storage is not None and not args.storage.strip():
        raise UserError("--storage: is empty; give a database URL (postgresql://user:password@host/db), or leave "
                        "it out for study.db in --out")
    say = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    result = tune(args.config, args.out, args.overrides, args.trials, args.timeout, args.storage, args.study_name,
                  args.seeds, methods, args.heartbeat, progress=not args.quiet, say=say, mixes=mixes,
                  rescore=args.rescore, rescore_seeds=args.rescore_seeds)
    print(f"\n{best_line(result.summary)}; this worker ran {result.ran}")
    if result.seeds:
        print(f"\n{result.seeds.table}")
        seed = result.seeds.first["config"]["seed"]
        print_deliverable(result.seeds.first, f"{result.seeds.out_dir / f'seed_{seed}'}: ")
    print(f"report: {result.out_dir / 'tune.md'}")
    return deliverable_exit(result.seeds.first) if result.seeds else 0


def cmd_export(args: argparse.Namespace) -> int:
    from edgedistill.cli.export import export_run
    from edgedistill.deploy.fit import fit_summary
    from edgedistill.report.markdown import deliverables

    metrics, failed = export_run(args.run_dir, args.formats, args.roles)
    print(deliverables(metrics))
    print(fit_summary(metrics))
    for line in failed:
        print(f"edgedistill: error: {line}", file=sys.stderr)
    return DELIVERABLE_MISSING if failed else 0


def cmd_datasets(_: argparse.Namespace) -> int:
    from edgedistill.data import list_datasets

    for name, summary in list_datasets().items():
        print(f"{name:16s} {summary}")
    return 0


def cmd_models(_: argparse.Namespace) -> int:
    from edgedistill.models import list_models

    print(f"{'name':15s} {'side':8s} {'family':12s} {'inputs':24s} summary")
    for name, e in list_models().items():
        print(f"{name:15s} {e.side:8s} {e.family:12s} {','.join(e.inputs):24s} {e.summary}")
    print("\nYour own model: model: 'package.module:factory' (the factory returns an nn.Module giving logits)")
    return 0


def cmd_methods(_: argparse.Namespace) -> int:
    from edgedistill.config import DistillConfig
    from edgedistill.distill import METHODS

    defaults = DistillConfig().model_dump()
    print(f"{'name':10s} {'kind':8s} {'paper':36s} defaults")
    for name, spec in METHODS.items():
        settings = spec.describe(defaults).removeprefix(name).strip().removeprefix("(").removesuffix(")")
        print(f"{name:10s} {spec.kind:8s} {spec.paper:36s} {settings}")
    print("\nOne logit method (or none: plain CE) plus any feature or relation methods, e.g. "
          "distill.method: [kd, at]; "
          "distill.logit_standardization: true z-scores the logits of "
          f"{', '.join(n for n, m in METHODS.items() if m.standardize)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from edgedistill.report import rebuild_reports

    print(f"report: {rebuild_reports(args.run_dir)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from edgedistill.report import compare_runs

    print(f"report: {compare_runs(args.run_dirs, args.out)}")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from edgedistill.deploy import load_catalog

    print(f"{'name':16s} {'flash':>10s} {'RAM':>10s} {'cores':>5s} {'budget':>8s}  {'formats':36s} description")
    for name, d in load_catalog(args.catalog).items():
        budget = f"{d.latency_budget_ms:g} ms" if d.latency_budget_ms else "-"
        formats = ",".join(d.formats) + (f" + Vela ({d.npu.accelerator_config})" if d.npu else "")
        print(f"{name:16s} {human_bytes(d.flash_bytes):>10s} {human_bytes(d.ram_bytes):>10s} {d.cores:5d} "
              f"{budget:>8s}  {formats:36s} {' '.join(d.description.split())}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from edgedistill.deploy.text_frontend import classify

    for r in classify(args.onnx, args.texts):
        print(json.dumps(r))
    return 0


def _warnings_to_stderr() -> None:
    """Our own warnings, one line each, through a handler on our own logger (the root logger is not ours)."""
    logger = logging.getLogger("edgedistill")
    if not any(getattr(h, "_edgedistill_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("edgedistill: warning: %(message)s"))
        handler._edgedistill_cli = True
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def _no_library_side_files() -> None:
    """ONNX Runtime (1.29 on) writes a telemetry device id and event store in ~/.cache/Microsoft/DeveloperTools/
    .onnxruntime when it loads, outside the run folder; our command line turns that off before it loads, unless
    the user set these variables themselves (ORT_TELEMETRY_DISABLED is the name later releases read)."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("ORT_TELEMETRY_DISABLED", "1")


def main(argv: list[str] | None = None) -> int:
    _no_library_side_files()
    args = _parser().parse_args(argv)
    handler = {"run": cmd_run, "tune": cmd_tune,
               "datasets": cmd_datasets, "models": cmd_models, "methods": cmd_methods, "devices": cmd_devices,
               "report": cmd_report, "compare": cmd_compare, "classify": cmd_classify, "export": cmd_export}[args.command]
    _warnings_to_stderr()
    try:
        return handler(args)
    except UserError as exc:
        print(f"edgedistill: error: {strip_ansi(str(exc))}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"edgedistill: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgedistill: interrupted; checkpoints written so far are kept", file=sys.stderr)
        return 130
    except OSError as exc:  # the machine, not the model: a full disk, a read-only or missing place
        if args.debug:
            raise
        print(f"edgedistill: error: {environment_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug of ours: one line, the traceback behind --debug
        if args.debug:
            raise
        print(f"edgedistill: internal error: {first_line(exc)}; rerun with --debug for the traceback and report it",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

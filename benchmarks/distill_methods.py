"""Method table: one student trained from scratch and by each distillation method, over N seeds, scored in int8.

    python benchmarks/distill_methods.py --set teacher.checkpoint=bench_runs/fashion_teacher_w64/teacher.pt \
        --set teacher.args.width=64 [--config configs/fashion_mnist.yaml] [--seeds 3] \
        [--plan 100k:scratch,dkd,kd 15k:scratch,dkd,kd,fitnets,at] [--size 15k=convnet:channels=16,32,32] \
        [--taps stages.1,stages.2=stages.1,stages.2] [--plan '100k:scratch,kd,kd(alpha=1.0,temperature=2)']

The teacher is loaded, never trained here. For every seed the scratch control is trained once and each method
starts from the same initial weights, with the same batches and the same views: the teacher's outputs come from
one bank of K augmented views per sample (distill.cache), built once and shared by every seed and method, so the
scratch student sees exactly the inputs the distilled ones see. FitNets and attention transfer read a second bank
per student size: the same views and logits, plus the teacher's taps pooled to the student's tap sizes. Results
are written to OUT/results.json as each model finishes (a killed run picks up where it stopped), and the table in
docs/benchmarks.md is rewritten from them: mean ± std per method, the gain over scratch paired by seed with a
paired t-test, and whether it clears the noise (p < 0.05 and a mean gain above the scratch runs' std).

Each student is then handed to the deploy stage, which writes the --int8 file (onnxruntime-int8 unless told,
calibrated on training rows) and scores it through its runtime on the test split: the table's gains and verdicts
are those of the deployed int8 file, with fp32 beside it.

A method written with settings, such as kd(alpha=1.0,temperature=2), is its own row: those distill.* settings apply
to that row alone, so variants join a table whose scratch control they share. The table shows each row's
validation accuracy, the only score a variant may be chosen by.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import dataclasses

import torch

from edgedistill.atomic import atomic_write_text
from edgedistill.cli.seeds import mean_std, paired_gain
from edgedistill.config import ExperimentConfig, resolve_config
from edgedistill.deploy import deploy_plan
from edgedistill.deploy.backends import check_formats
from edgedistill.distill import of_kind
from edgedistill.distill.ce import CrossEntropy
from edgedistill.models import count_params
from edgedistill.models.build import build_model
from edgedistill.pipeline import Run, Trained, deploy_one, evaluate_model, prepare_in, teacher_cache, train_role
from edgedistill.roles import Role
from edgedistill.train.method_setup import build_method
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"100k": "convnet:channels=32,48,56;convs_per_stage=2;head=avg",
         "15k": "convnet:channels=16,32,32;convs_per_stage=1;head=avg"}


def number(text: str) -> int | float | str:
    """A --size value as the factory takes it: 16 -> 16, 0.5 -> 0.5, avg -> 'avg'."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_student(spec: str) -> tuple[str, dict]:
    """'convnet:channels=16,32,32;convs_per_stage=1;head=avg' -> ('convnet', {...})."""
    family, _, rest = spec.partition(":")
    args = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        parts = [number(v) for v in value.split(",")]
        args[key] = parts if "," in value else parts[0]
    return family, args


FEATURE_METHODS = tuple(of_kind("feature") + of_kind("relation"))  # rows that read the tap bank
FEATURE_SETTINGS = tuple(f"distill.{m}." for m in FEATURE_METHODS)  # --set keys only the tap-bank rows read


def split_methods(spec: str) -> list[str]:
    """'scratch,kd(alpha=1.0,temperature=2)' -> ['scratch', 'kd(alpha=1.0,temperature=2)']."""
    return [m for m in re.split(r",(?![^()]*\))", spec) if m]


def method_settings(method: str) -> tuple[str, list[str]]:
    """'kd(alpha=1.0,temperature=2)' -> ('kd', ['distill.alpha=1.0', 'distill.temperature=2'])."""
    base, _, rest = method.partition("(")
    return base, [f"distill.{item.strip()}" for item in rest.rstrip(")").split(",") if item.strip()]


def feature_settings(overrides: list[str]) -> list[str]:
    return sorted(o for o in overrides if o.startswith(FEATURE_SETTINGS))


def parse_taps(spec: str | None) -> tuple[list[str] | None, list[str] | None]:
    """'stages.1,stages.2=stages.1,stages.2' -> student taps, teacher taps; None keeps the models' own."""
    if not spec:
        return None, None
    student, _, teacher = spec.partition("=")
    return student.split(","), teacher.split(",")


def student_config(cfg: ExperimentConfig, spec: str, method: str, seed: int,
                   taps: tuple[list[str] | None, list[str] | None] = (None, None)) -> ExperimentConfig:
    family, args = parse_student(spec)
    base, settings = method_settings(method)
    cfg = resolve_config(cfg, settings) if settings else cfg
    student = cfg.student.model_copy(update={"model": family, "args": args})
    distill = cfg.distill.model_copy(update={"method": base if base != "scratch" else "kd",
                                             "student_taps": taps[0], "teacher_taps": taps[1]})
    return cfg.model_copy(update={"student": student, "distill": distill, "seed": seed})


def for_model(base: Run, cfg: ExperimentConfig, run_dir: Path) -> Run:
    """The prepared run (data, loaded teacher) with one row's config, working in that row's folder."""
    return dataclasses.replace(base, cfg=cfg, plan=deploy_plan(cfg.deploy, base.profile), run_dir=run_dir,
                               trained={Role.TEACHER: base.trained[Role.TEACHER]},
                               records={}, test_logits={})


def set_up(run: Run, loss, student) -> None:
    loss.setup(student.to(run.accel), run.teacher, torch.as_tensor(run.data.x_train[:2]).to(run.accel),
               num_train=len(run.data.x_train) + run.data.n_pool)  # a bank keyed by row covers the pool too


def tap_bank(base: Run, cfg: ExperimentConfig, folder: Path, max_bytes: int):
    """The pipeline's cache stage for one student size: the teacher's logits and taps, the taps pooled to this
    student's tap sizes (the loss compares them there), built with the shared bank's seed and views."""
    distill = cfg.distill.model_copy(update={"cache": cfg.distill.cache.model_copy(update={"max_bytes": max_bytes})})
    run = for_model(base, cfg.model_copy(update={"seed": base.cfg.seed, "distill": distill}), folder)
    probe = build_method(cfg.distill, cfg.student.train.label_smoothing)
    set_up(run, probe, build_model(cfg.student, "student", run.data, cfg.seed + 1))
    t0 = time.perf_counter()
    bank = teacher_cache(run, probe)
    if bank is None:
        raise SystemExit(f"the tap bank would exceed {max_bytes / 1e9:.1f} GB; name fewer or deeper --taps, "
                         "or raise --max-tap-bytes")
    if bank.built:
        atomic_write_text(folder / "teacher_taps.json", json.dumps({"seconds": time.perf_counter() - t0,
                                                                    "taps": probe.teacher_taps,
                                                                    "stored_as": probe.tap_shapes}))
    return bank


def train_one(base: Run, cfg: ExperimentConfig, cache, run_dir: Path, int8: str | None) -> dict:
    """One row's student, trained by the pipeline's own train_role from the scratch control's initial weights, and
    scored in fp32 and, with `int8` (a deploy format), through the int8 file the deploy stage writes."""
    if int8:
        cfg = cfg.model_copy(update={"deploy": cfg.deploy.model_copy(update={"formats": [int8], "latency_runs": 5})})
    run = for_model(base, cfg, run_dir)
    scratch = run_dir.name == "scratch"
    student = build_model(cfg.student, "student", run.data, cfg.seed + 1)
    if scratch:
        result = train_role(run, Role.STUDENT_SCRATCH, student, cfg.student,
                            CrossEntropy(cfg.student.train.label_smoothing), cache=cache)
    else:
        method = build_method(cfg.distill, cfg.student.train.label_smoothing)
        set_up(run, method, student)
        result = train_role(run, Role.STUDENT_KD, student, cfg.student, method, teacher=run.teacher, cache=cache)
    scores, test_logits = evaluate_model(student, run.data, run.accel)
    record = {"params": count_params(student), "test_accuracy": scores["test"]["accuracy"],
              "f1_macro": scores["test"]["f1_macro"], "best_val_accuracy": result.best_val_accuracy,
              "best_epoch": result.best_epoch, "seconds": result.seconds, "cached_teacher": cache is not None}
    if int8:
        deployed = deploy_one(run, Role.STUDENT_SCRATCH if scratch else Role.STUDENT_KD, student.cpu(), test_logits)
        if "error" in deployed or int8 not in deployed["formats"]:
            raise SystemExit(f"{run_dir}: {int8} failed: {deployed.get('error') or deployed.get('failed')}")
        scored = deployed["formats"][int8]
        record |= {"int8_format": int8, "int8_test_accuracy": scored["test_accuracy"],
                   "int8_val_accuracy": scored["val_accuracy"], "int8_file_bytes": scored["file_bytes"]}
    return record


def mean_val(runs) -> str:
    return f"{100 * mean_std([r['best_val_accuracy'] for r in runs])['mean']:.2f}%"


def scored_by(results: dict) -> str:
    """The table's measure: test accuracy through the int8 file when every model has one, else fp32 PyTorch's."""
    runs = [r for size in results.values() for by_seed in size.values() for r in by_seed.values()]
    return "int8_test_accuracy" if runs and all("int8_test_accuracy" in r for r in runs) else "test_accuracy"


def acc_cell(runs: list[dict], key: str) -> str:
    if not all(key in r for r in runs):
        return "-"
    acc = mean_std([r[key] for r in runs])
    return f"{100 * acc['mean']:.2f}%" + (f" ± {100 * acc['std']:.2f}" if len(runs) > 1 else "")


def summarize(results: dict, size: str, seeds: list[int], key: str) -> list[str]:
    """One row per method: validation, fp32 and int8 test accuracy, and the gain over scratch in `key`."""
    rows = []
    scratch = {s: results[size]["scratch"][str(s)] for s in seeds if str(s) in results[size].get("scratch", {})}
    if not scratch:
        return rows
    sc = mean_std([r[key] for r in scratch.values()])
    params = next(iter(scratch.values()))["params"]
    runs = list(scratch.values())
    rows.append(f"| {size} | scratch (control) | {params:,} | {len(scratch)} | {mean_val(runs)} | "
                f"{acc_cell(runs, 'test_accuracy')} | {acc_cell(runs, 'int8_test_accuracy')} | - | - | - |")
    for method, by_seed in results[size].items():
        if method == "scratch":
            continue
        paired = [s for s in scratch if s in {int(k) for k in by_seed}]
        if not paired:
            continue
        runs = [by_seed[str(s)] for s in paired]
        g = paired_gain([r[key] - scratch[s][key] for s, r in zip(paired, runs)], sc["std"])
        verdict = {1: "gain beyond the noise", -1: "loss beyond the noise", 0: "inside the noise"}[
            g["verdict"]] if len(paired) > 1 else "one seed: no verdict"
        p = f"{g['p_value']:.3f}" if g["p_value"] is not None else "-"
        spread = f" ± {100 * g['std']:.2f}" if len(paired) > 1 else ""  # one seed has no std
        rows.append(f"| {size} | {method} | {params:,} | {len(paired)} | {mean_val(runs)} | "
                    f"{acc_cell(runs, 'test_accuracy')} | {acc_cell(runs, 'int8_test_accuracy')} | "
                    f"{100 * g['mean']:+.2f}{spread} | {p} | {verdict} |")
    return rows


def tap_banks_line(args, results: dict) -> str:
    """Which taps FitNets and AT read, and what their banks cost to build."""
    built = {size: json.loads(f.read_text()) for size in results
             if (f := Path(args.out) / size / "teacher_taps.json").exists()}
    if not built:
        return ""
    info = next(iter(built.values()))
    costs = ", ".join(f"{size} {b['seconds']:.0f} s, stored as {b['stored_as']}" for size, b in built.items())
    student = args.taps.partition("=")[0] if args.taps else "the student's feature_taps"
    settings = feature_settings(args.overrides)
    weights = f" ({', '.join(settings)})" if settings else ""
    return (f"- FitNets and AT{weights}: student taps {student} paired with teacher taps {info['taps']}; a second "
            f"bank per student size holds the same views' logits and the teacher's taps pooled to the student's tap "
            f"sizes (built in {costs})\n")


def write_table(results: dict, args, teacher_record: dict, wall: float) -> str:
    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    key = scored_by(results)
    measure = "int8" if key == "int8_test_accuracy" else "fp32"
    rows = ["| student | method | params | seeds | val acc (mean) | fp32 test acc (mean ± std) | int8 test acc "
            f"(mean ± std) | gain over scratch, paired ({measure}) | paired t-test p | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for size in results:
        rows += summarize(results, size, seeds, key)
    int8 = args.int8 if key == "int8_test_accuracy" else None  # check_recipe keeps one format per folder
    specs = "; ".join(f"{k}: `{v}`" for k, v in args.sizes.items() if k in results)
    trained = sum(r["seconds"] for size in results.values() for runs in size.values() for r in runs.values())
    body = (f"### Distillation methods against scratch, {args.dataset} ({args.seeds} seeds, {args.epochs} student "
            f"epochs, {'/'.join(k for k in results)})\n\n"
            f"{header(wall, 'wall time of the last call')}"
            f"- training time summed over every model in the table (across restarts): {trained / 60:.1f} min\n"
            f"- config: `{Path(args.config).name}`"
            f"{' with ' + ', '.join(args.overrides) if args.overrides else ''}\n"
            f"- teacher (loaded): {teacher_record['params']:,} params, {100 * teacher_record['test_accuracy']:.2f}% "
            f"test accuracy\n- students: {specs}\n"
            f"- teacher outputs: one bank of {args.views} augmented views per training sample, built once "
            f"({teacher_record['cache_seconds']:.0f} s) and shared by every seed and method; the scratch control "
            f"draws from the same views\n{tap_banks_line(args, results)}\n" + "\n".join(rows)
            + "\n\nEach seed changes the students' initial weights, batch order and view choice; within a seed every "
              "method starts from the scratch control's initial weights. A gain is beyond the noise when the paired "
              "t-test gives p < 0.05 and the mean gain exceeds the scratch runs' std. Test accuracy of the "
              "best-on-validation checkpoint; validation is 10% of the training split, the same for every seed. "
            + (f"int8: the file the deploy stage writes ({int8}, calibrated on training rows), scored through its "
               "runtime on the whole test split; the gains and verdicts are in int8. " if int8 else "")
            + "A method written with settings, such as kd(alpha=1.0), ran with those distill.* settings; "
              "variants are chosen by validation accuracy, never by test accuracy.\n")
    if args.key:  # an empty key keeps exploratory runs out of the docs
        replace_section(args.key, body)
    return body


def uses_features(args) -> bool:
    return any(method_settings(m)[0] in FEATURE_METHODS for item in args.plan
               for m in split_methods(item.partition(":")[2]))


def has_feature_rows(results: dict) -> bool:
    return any(method_settings(m)[0] in FEATURE_METHODS for size in results.values() for m in size)


def check_recipe(path: Path, args, results: dict) -> None:
    """Resuming into OUT must not mix models trained with another recipe into one table."""
    planned = {item.partition(":")[0] for item in args.plan}
    shared = sorted(o for o in args.overrides if o not in feature_settings(args.overrides))
    recipe = {"config": Path(args.config).name, "overrides": shared, "views": args.views, "int8": args.int8,
              "sizes": {k: v for k, v in args.sizes.items() if k in planned}}
    stored = json.loads(path.read_text()) if path.exists() else None
    if stored:
        clash = [k for k in ("config", "overrides", "views", "int8") if stored.get(k) != recipe[k]]
        clash += [f"size {k}" for k in recipe["sizes"] if stored["sizes"].get(k, recipe["sizes"][k]) != recipe["sizes"][k]]
        features = feature_settings(args.overrides)
        if uses_features(args) and has_feature_rows(results):  # the first feature rows set these
            clash += ["--taps"] if stored.get("taps") != args.taps else []
            clash += ["FitNets/AT settings"] if stored.get("feature_settings") != features else []
        if clash:
            raise SystemExit(f"{path.parent}: its results came from another recipe ({', '.join(clash)} differ); "
                             "use another --out")
        recipe["sizes"] = stored["sizes"] | recipe["sizes"]
        recipe["taps"], recipe["feature_settings"] = stored.get("taps"), stored.get("feature_settings")
    if uses_features(args):  # FitNets and AT rows all read the same taps and --set weights
        recipe["taps"], recipe["feature_settings"] = args.taps, feature_settings(args.overrides)
    atomic_write_text(path, json.dumps(recipe, indent=2))


def record_result(path: Path, size: str, method: str, seed: int, record: dict) -> dict:
    """Add one model to OUT/results.json as it stands on disk, so runs of other seeds into OUT keep theirs."""
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault(size, {}).setdefault(method, {})[str(seed)] = record
    atomic_write_text(path, json.dumps(results, indent=2))
    return results


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--plan", nargs="+", default=["100k:scratch,dkd,kd", "15k:scratch,dkd,kd"],
                    help="SIZE:method,method ... in the order to run them; seeds run innermost-last")
    ap.add_argument("--size", action="append", default=[], help="SIZE=family:key=v,v;key=v (adds or replaces)")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--taps", help="STUDENT_TAPS=TEACHER_TAPS for FitNets and AT, comma-separated module names")
    ap.add_argument("--max-tap-bytes", type=float, default=6e9, help="the largest tap bank to build")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default=str(ROOT / "bench_runs" / "methods"))
    ap.add_argument("--key", default="fashion_methods")
    ap.add_argument("--int8", default="onnxruntime-int8",
                    help="the int8 deploy format each student is scored through ('none': fp32 only)")
    args = ap.parse_args()
    args.int8 = None if args.int8 == "none" else args.int8
    if args.int8:
        check_formats([args.int8], 8, "--int8")
        if not args.int8.endswith("-int8"):
            raise SystemExit(f"--int8: {args.int8!r} is not an int8 format (e.g. onnxruntime-int8, tflm-int8)")
    args.sizes = dict(SIZES) | dict(s.split("=", 1) for s in args.size)
    return args


def load_teacher(args: argparse.Namespace, out: Path):
    """The run every student shares (one split, the teacher loaded and checked), the teacher's logits bank, and the
    teacher's record for the table."""
    cfg = resolve_config(args.config, args.overrides + ["distill.cache.enabled=true", f"distill.cache.views={args.views}",
                                                        "deploy.enabled=false"])
    if not cfg.teacher.checkpoint:
        raise SystemExit("the method table loads its teacher: --set teacher.checkpoint=PATH (see fashion_teacher.py)")
    args.epochs = cfg.student.train.epochs
    args.dataset = {"fashion_mnist": "Fashion-MNIST", "mnist1d": "MNIST-1D"}.get(cfg.data.name, cfg.data.name)
    base = prepare_in(cfg, out)
    teacher = base.loaded_teacher.to(base.accel)
    base.trained[Role.TEACHER] = Trained(teacher, None, cfg.teacher)
    scores, _ = evaluate_model(teacher, base.data, base.accel)
    tc = time.perf_counter()
    cache = teacher_cache(base, CrossEntropy())  # the logits bank every row shares: no taps
    build_path = out / "cache_build.json"  # the build time survives a restart that reuses the bank
    if cache is None:
        raise SystemExit("the teacher-output bank would exceed distill.cache.max_bytes; lower --views or raise it")
    if cache.built:
        atomic_write_text(build_path, json.dumps({"seconds": time.perf_counter() - tc}))
    teacher_record = {"params": count_params(teacher), "test_accuracy": scores["test"]["accuracy"],
                      "cache_seconds": json.loads(build_path.read_text())["seconds"] if build_path.exists() else
                      float("nan")}
    print(f"teacher {teacher_record}", flush=True)
    return cfg, base, cache, teacher_record


def main() -> None:
    args = parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    check_recipe(out / "recipe.json", args, results)
    cfg, base, cache, teacher_record = load_teacher(args, out)
    taps = parse_taps(args.taps)
    for item in args.plan:
        size, _, methods = item.partition(":")
        bank = None  # this size's tap bank, built or loaded when a feature method first needs it
        for seed in range(args.seed0, args.seed0 + args.seeds):
            for method in split_methods(methods):
                done = results.setdefault(size, {}).setdefault(method, {})
                if str(seed) in done:
                    continue
                run_cfg = student_config(cfg, args.sizes[size], method, seed, taps)
                feature = method_settings(method)[0] in FEATURE_METHODS
                if feature and bank is None:
                    bank = tap_bank(base, run_cfg, out / size, int(args.max_tap_bytes))
                run_dir = out / size / f"seed_{seed}" / re.sub(r"[^\w.=-]+", "_", method).strip("_")
                run_dir.mkdir(parents=True, exist_ok=True)
                record = train_one(base, run_cfg, bank if feature else cache, run_dir, args.int8)
                print(f"{size} seed {seed} {method}: {record}", flush=True)
                results = record_result(results_path, size, method, seed, record)
                write_table(results, args, teacher_record, time.perf_counter() - t0)
    print(write_table(results, args, teacher_record, time.perf_counter() - t0))


if __name__ == "__main__":
    main()

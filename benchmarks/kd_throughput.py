"""KD step cost with the teacher-output cache and without it, relative to training the same student from scratch,
measured in one run on one machine.

    python benchmarks/kd_throughput.py [--config configs/fashion_mnist.yaml] [--steps 60] [--views 8] [--whole 20]

Throughput depends on the architectures, not on trained weights, so the teacher is the config's architecture at
its initial weights. Each variant trains a fresh copy of the same student for the same batches (one epoch capped
at --steps batches), with the config's precision and augmentation. After one warm-up pass, the order scratch,
KD live, KD cached repeats --rounds times and the best round per variant is kept. The cache's one-off build is
timed separately and also shown spread over the config's student epochs.

Then, unless --whole 0, the whole-run cost: --whole full epochs (default: the config's student epochs) of the
scratch student and of the cached KD student, alternating which goes first epoch by epoch so that a slow spell of
the machine hits both alike, summed, with the cache's build added to the KD side. Each epoch validates on the same
256 validation rows for both.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from edgedistill.config import resolve_config
from edgedistill.distill.ce import CrossEntropy
from edgedistill.models.build import build_model
from edgedistill.pipeline import Trained, prepare_in, teacher_cache
from edgedistill.roles import Role
from edgedistill.train.method_setup import set_up_method
from edgedistill.train.trainer import Trainer, batch_source, check_train_config
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    ap.add_argument("--steps", type=int, default=60, help="batches per timed epoch")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--whole", type=int, default=None, help="whole epochs per student for the run-level cost "
                    "(default: the config's student epochs; 0 skips it)")
    return ap.parse_args()


def set_up(cfg, train, tmp: Path):
    """The run, an untrained teacher (its cost, not its accuracy, is measured), the configured method set up on a
    student, and the pipeline's own teacher cache with the seconds its build took."""
    run = prepare_in(cfg, tmp)
    check_train_config(train, run.accel)
    teacher = run.loaded_teacher.to(run.accel).eval()
    run.trained[Role.TEACHER] = Trained(teacher, None, cfg.teacher)
    method = set_up_method(cfg.distill, train.label_smoothing,
                           build_model(cfg.student, "student", run.data, cfg.seed + 1).to(run.accel), teacher,
                           torch.as_tensor(run.data.x_train[:2]).to(run.accel), len(run.data.x_train))
    t0 = time.perf_counter()
    cache = teacher_cache(run, method)
    if cache is None:
        raise SystemExit("the teacher cache would exceed distill.cache.max_bytes; raise it or lower --views")
    return run, teacher, method, cache, time.perf_counter() - t0


def main() -> None:
    args = parse_args()
    t_start = time.perf_counter()
    cfg = resolve_config(args.config, [f"distill.cache.views={args.views}", "deploy.enabled=false"])
    train = cfg.student.train.model_copy(update={"epochs": 1, "max_steps_per_epoch": args.steps})
    bank_dir = tempfile.TemporaryDirectory()  # kept until exit: a bank beyond distill.cache.max_ram_bytes is read
    run, teacher, method, cache, build_s = set_up(cfg, train, Path(bank_dir.name))  # from its files while timing
    data, accel = run.data, run.accel

    def epoch_seconds(loss_fn, use_teacher: bool, use_cache: bool, recipe=train) -> float:
        student = build_model(cfg.student, "student", data, cfg.seed + 1)
        t = time.perf_counter()
        source = batch_source(loss_fn, cfg.data.augment, teacher if use_teacher else None,
                              cache if use_cache else None, data.pixel_stats)
        Trainer(recipe, loss_fn, source, accel, cfg.seed, "timing").fit(student, data.x_train, data.y_train,
                                                                       data.x_val[:256], data.y_val[:256])
        return time.perf_counter() - t

    variants = {"scratch (CE, no teacher)": (CrossEntropy(train.label_smoothing), False, False),
                "KD, teacher live": (method, True, False),
                f"KD, teacher cached ({cache.views} views)": (method, False, True)}
    for v in variants.values():  # warm-up: first calls pay for allocation and kernel selection
        epoch_seconds(*v)
    best = {name: float("inf") for name in variants}
    for _ in range(args.rounds):  # interleaved, so a slow spell of the machine hits every variant alike
        for name, v in variants.items():
            best[name] = min(best[name], epoch_seconds(*v))
    whole = cfg.student.train.epochs if args.whole is None else args.whole
    whole_text = whole_run(whole, variants, epoch_seconds, cfg.student.train.model_copy(update={"epochs": 1}),
                           build_s, cache.views) if whole else ""
    body = section(args, cfg, train, len(data.x_train), best, build_s, cache.views, time.perf_counter() - t_start)
    replace_section("kd_throughput", body + whole_text)
    print(body + whole_text)


def section(args, cfg, train, n_train: int, best: dict, build_s: float, views: int, wall: float) -> str:
    scratch = best["scratch (CE, no teacher)"]
    n_batches = min(args.steps, -(-n_train // train.batch_size))
    rows = ["| variant | seconds per timed epoch | images/s | cost vs scratch |", "|---|---|---|---|"]
    for name, sec in best.items():
        rows.append(f"| {name} | {sec:.2f} | {n_batches * train.batch_size / sec:,.0f} | {sec / scratch:.2f}x |")
    full_epochs = cfg.student.train.epochs
    full_batches = -(-n_train // train.batch_size)
    per_epoch_build = build_s / full_epochs
    cached_full = best[f"KD, teacher cached ({views} views)"] * full_batches / n_batches
    scratch_full = scratch * full_batches / n_batches
    return (f"### KD step cost: teacher-output cache against live teacher and scratch\n\n{header(wall)}"
            f"- config: `{Path(args.config).name}`: teacher {cfg.teacher.model} {cfg.teacher.args}, student "
            f"{cfg.student.model} {cfg.student.args}, batch {train.batch_size}, precision {train.precision}; "
            f"{n_batches} batches per timed epoch, best of {args.rounds} rounds\n\n" + "\n".join(rows) +
            f"\n\nThe cache's one-off build ({views} augmented views of {n_train:,} training images "
            f"through the teacher) took {build_s:.1f} s. Spread over the config's {full_epochs} student epochs it adds "
            f"{per_epoch_build:.1f} s per epoch: a full cached KD epoch then costs "
            f"{(cached_full + per_epoch_build) / scratch_full:.2f}x a scratch epoch (extrapolated from the timed "
            f"batches).\n")


def whole_run(epochs: int, variants: dict, epoch_seconds, full_epoch, build_s: float, views: int) -> str:
    """Scratch and cached KD for `epochs` full epochs each, alternating which goes first; the build joins KD."""
    scratch_v, kd_v = variants["scratch (CE, no teacher)"], variants[f"KD, teacher cached ({views} views)"]
    scratch_s = kd_s = 0.0
    for e in range(epochs):
        pair = [("scratch", scratch_v), ("kd", kd_v)]
        for name, v in (pair if e % 2 == 0 else pair[::-1]):
            sec = epoch_seconds(*v, recipe=full_epoch)
            scratch_s, kd_s = (scratch_s + sec, kd_s) if name == "scratch" else (scratch_s, kd_s + sec)
    return (f"\nWhole run, measured: {epochs} full epochs of each student, alternating which goes first. Scratch "
            f"{scratch_s:.1f} s; cached KD {kd_s:.1f} s plus the {build_s:.1f} s build = {kd_s + build_s:.1f} s: "
            f"**{(kd_s + build_s) / scratch_s:.2f}x** the scratch student's training "
            f"({kd_s / scratch_s:.2f}x without the build).\n")


if __name__ == "__main__":
    main()

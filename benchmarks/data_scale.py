"""How the packed, streamed image_folder path scales: packing time, peak memory and training images/s per role,
through the whole pipeline on a synthetic RGB folder (benchmarks/synth_images.py), optionally against the old
in-memory path.

    python benchmarks/data_scale.py --n 100000 --size 96 [--root DIR] [--epochs 1] [--compare-in-memory] [--key KEY]

The pictures are synthetic: the figures measure scale, not accuracy. Packing runs alone in a fresh process on an
empty pack folder (`load_dataset("image_folder", ..., options={"pack_dir": ...})`); each pipeline run is
`edgedistill run CONFIG --jsonl` in its own process, whose memory is the peak of the summed RSS of its process tree,
sampled every 0.2 s from /proc. Training images/s per role is n_train x epochs over the epochs' "seconds" in
RUN_DIR/logs/<role>.jsonl (training time only, validation excluded as the trainer measures it). The table goes into
docs/benchmarks.md under --key, the raw figures into bench_runs/data_scale_<key>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from synth_images import generate

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_S = 0.2
STUDENT = {"width_mult": 0.5, "stem_stride": 2, "stages": [[16, 1, 1], [24, 2, 2], [32, 2, 2], [64, 1, 2]]}
ROLES = ("teacher", "student_scratch", "student_kd")
PENDING = ("pack_dir", "in_memory", "stem_stride")  # what the packed image_folder work adds to the project
PACK_CODE = ("import sys; from edgedistill.data import load_dataset; "
             "d = load_dataset('image_folder', path=sys.argv[1], options={'size': [int(sys.argv[2])] * 2, "
             "'grayscale': False, 'pack_dir': sys.argv[3]}); "
             "print('train', getattr(d.x_train, 'shape', None), 'test', getattr(d.x_test, 'shape', None))")


# ---- memory of a process tree, from /proc (psutil is not among the project's dependencies) ----

def rss_bytes(pid: int) -> int:
    """VmRSS of one process, 0 once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def parents() -> dict[int, int]:
    """pid -> parent pid of every process now alive, to find a tree's descendants."""
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
                out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces
            except (OSError, ValueError, IndexError):
                continue
    return out


def tree_rss(root_pid: int) -> tuple[int, int]:
    """(summed RSS of root_pid and all its descendants, RSS of root_pid alone)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents().items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss_bytes(pid)
        todo += children.get(pid, [])
    return total, rss_bytes(root_pid)


def run_measured(cmd: list[str], log: Path) -> dict:
    """Run cmd with output to `log`, sampling its tree's memory; wall time, peaks and exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak_tree = peak_main = 0
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        while proc.poll() is None:
            tree, main = tree_rss(proc.pid)
            peak_tree, peak_main = max(peak_tree, tree), max(peak_main, main)
            time.sleep(SAMPLE_S)
    return {"command": cmd, "log": str(log), "rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 2),
            "peak_tree_rss_bytes": peak_tree, "peak_main_rss_bytes": peak_main}


def require_success(result: dict, what: str) -> None:
    """Stop with the log's tail, and say so plainly when the option it failed on is one not yet in this checkout."""
    if result["rc"] == 0:
        return
    tail = Path(result["log"]).read_text(errors="replace").strip().splitlines()[-15:]
    pending = [opt for opt in PENDING if any(opt in line for line in tail)]
    hint = (f"\n{', '.join(pending)}: part of the packed, streamed image_folder path; this checkout of edgedistill "
            "does not have it yet." if pending else "")
    raise SystemExit(f"{what} failed (exit {result['rc']}, log {result['log']}):\n  " + "\n  ".join(tail) + hint)


# ---- the experiment ----

def data_options(size: int, pack_dir: Path, in_memory: bool) -> dict:
    """image_folder options: RGB at size x size, packed into pack_dir; in_memory adds the old float32 path."""
    opts = {"size": [size, size], "grayscale": False, "pack_dir": str(pack_dir)}
    return {**opts, "in_memory": True} if in_memory else opts


def experiment(folder: Path, size: int, pack_dir: Path, epochs: int, in_memory: bool) -> dict:
    """The config of one pipeline run: resnet teacher, mobilenet student, cached KD, int8 ONNX for a Pi 4."""
    train = {"epochs": epochs, "batch_size": 128, "optimizer": "adamw", "lr": 3e-3}
    return {
        "name": "data_scale_in_memory" if in_memory else "data_scale_streamed",
        "seed": 0,
        "device": "raspberry_pi_4",
        "data": {"name": "image_folder", "path": str(folder), "options": data_options(size, pack_dir, in_memory),
                 "augment": {"crop_padding": 0, "hflip": True}},
        "teacher": {"model": "resnet", "args": {"width": 16, "blocks": [1, 1, 1], "stem_stride": 2},
                    "train": train},
        "student": {"model": "mobilenet", "args": STUDENT, "train": train},
        "distill": {"method": "kd", "cache": {"enabled": True, "views": 2}},
        "deploy": {"enabled": True, "formats": ["onnxruntime-int8"], "latency_runs": 20},
    }


def write_config(folder: Path, size: int, pack_dir: Path, epochs: int, in_memory: bool, out: Path) -> Path:
    """OUT/<variant>.yaml, written as JSON (which YAML reads), so no YAML writer is needed."""
    config = out / f"{'in_memory' if in_memory else 'streamed'}.yaml"
    config.write_text(json.dumps(experiment(folder, size, pack_dir, epochs, in_memory), indent=2) + "\n")
    return config


def cli() -> str:
    """The project's own edgedistill console script, beside the interpreter that runs this benchmark."""
    for candidate in (Path(sys.executable).parent / "edgedistill", ROOT / ".venv" / "bin" / "edgedistill"):
        if candidate.is_file():
            return str(candidate)
    raise SystemExit(f"no edgedistill script beside {sys.executable} or in .venv/bin; run `make install` and use "
                     ".venv/bin/python")


def pack(folder: Path, size: int, pack_dir: Path, out: Path) -> dict:
    """Pack the folder once, alone in a fresh process on an empty pack_dir, and measure it."""
    shutil.rmtree(pack_dir, ignore_errors=True)
    pack_dir.mkdir(parents=True)
    result = run_measured([sys.executable, "-c", PACK_CODE, str(folder), str(size), str(pack_dir)],
                          out / "pack.log")
    require_success(result, "packing")
    result["pack_bytes"] = sum(f.stat().st_size for f in pack_dir.rglob("*") if f.is_file())
    return result


def pipeline(folder: Path, size: int, pack_dir: Path, epochs: int, in_memory: bool, out: Path) -> dict:
    """One `edgedistill run` of the experiment, measured, with its per-role training throughput."""
    variant = "in_memory" if in_memory else "streamed"
    config, run_dir = write_config(folder, size, pack_dir, epochs, in_memory, out), out / f"run_{variant}"
    result = run_measured([cli(), "run", str(config), "--out", str(run_dir), "--overwrite", "--jsonl"],
                          out / f"{variant}.log")
    require_success(result, f"the {variant} pipeline run")
    return {**result, "variant": variant, "config": str(config), **throughput(run_dir)}


def throughput(run_dir: Path) -> dict:
    """Training images/s per role: n_train per epoch over each epoch's training seconds in logs/<role>.jsonl."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    n_train = int(metrics["dataset"]["n_train"])
    roles = {}
    for role in ROLES:
        log = run_dir / "logs" / f"{role}.jsonl"
        if not log.is_file():
            continue
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        seconds = sum(r["seconds"] for r in rows)
        test = metrics["models"].get(role, {}).get("test", {}).get("accuracy")
        roles[role] = {"epochs": len(rows), "train_seconds": round(seconds, 2),
                       "images_per_s": round(n_train * len(rows) / seconds, 1) if seconds > 0 else None,
                       "test_accuracy": test}
    return {"run_dir": str(run_dir), "n_train": n_train, "n_test": metrics["dataset"].get("n_test"), "roles": roles}


PROBE = """
import json, sys, time, torch
from edgedistill.config import AugmentConfig, TrainConfig
from edgedistill.data import load_dataset
from edgedistill.distill.ce import CrossEntropy
from edgedistill.models import create_model
from edgedistill.train.trainer import Trainer, batch_source
folder, size, pack_dir, steps, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
opts = {"size": [size, size], "grayscale": False, "pack_dir": pack_dir}
data = {v: load_dataset("image_folder", path=folder, options={**opts, "in_memory": v == "in_memory"})
        for v in ("streamed", "in_memory")}
args = json.loads(sys.argv[6])
aug = AugmentConfig(hflip=True)
ce = CrossEntropy()
cfg = TrainConfig(epochs=1, batch_size=128, lr=3e-3, max_steps_per_epoch=steps)
out = {v: [] for v in data}
for r in range(rounds + 1):  # round 0 warms both paths up and is not kept
    for v in (("streamed", "in_memory") if r % 2 == 0 else ("in_memory", "streamed")):
        d = data[v]
        torch.manual_seed(0)
        model = create_model("mobilenet", d.input_shape, d.num_classes, args)
        res = Trainer(cfg, ce, batch_source(ce, aug, stats=d.pixel_stats), torch.device("cpu"), 0, v).fit(
            model, d.x_train, d.y_train, d.x_val[:256], d.y_val[:256])
        if r:
            out[v].append(steps * 128 / res.history[0]["seconds"])
print(json.dumps(out))
"""


def probe(folder: Path, size: int, pack_dir: Path, steps: int, rounds: int, student: dict) -> dict:
    """Student training images/s, streamed and in memory alternating in one process, so both meet the same
    machine load (epoch times here swing by 20% between epochs of one run); the median of each."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(folder), str(size), str(pack_dir), str(steps),
                          str(rounds), json.dumps(student)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"the throughput probe failed:\n{out.stderr[-2000:]}")
    rates = json.loads(out.stdout.strip().splitlines()[-1])
    med = {v: statistics.median(r) for v, r in rates.items()}
    return {"steps": steps, "rounds": rounds, "images_per_s": rates, "median": med,
            "ratio": round(med["streamed"] / med["in_memory"], 3)}


# ---- the report ----

def mib(n: int) -> str:
    return f"{n / 2 ** 20:,.0f} MiB"


def table(runs: list[dict]) -> str:
    """One row per pipeline run and role: training images/s, epoch seconds, and the run's wall and peak memory."""
    rows = ["| data path | role | train images/s | train s | test acc (synthetic) | run wall | peak RSS, tree | "
            "peak RSS, main |", "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for role, r in run["roles"].items():
            acc = f"{100 * r['test_accuracy']:.2f}%" if r["test_accuracy"] is not None else "-"
            rows.append(f"| {run['variant']} | {role} | {r['images_per_s'] or 0:,.0f} | {r['train_seconds']:.1f} | "
                        f"{acc} | {run['wall_s'] / 60:.1f} min | {mib(run['peak_tree_rss_bytes'])} | "
                        f"{mib(run['peak_main_rss_bytes'])} |")
    return "\n".join(rows)


def ratios(runs: list[dict]) -> dict[str, float]:
    """Streamed over in-memory training images/s, per role present in both runs."""
    by = {r["variant"]: r["roles"] for r in runs}
    if set(by) != {"streamed", "in_memory"}:
        return {}
    return {role: round(s["images_per_s"] / by["in_memory"][role]["images_per_s"], 3)
            for role, s in by["streamed"].items() if role in by["in_memory"] and s["images_per_s"]
            and by["in_memory"][role]["images_per_s"]}


def body(args: argparse.Namespace, synth: dict, packed: dict, runs: list[dict], head: str,
         probed: dict | None = None) -> str:
    """The docs/benchmarks.md section: header, setup, packing line, the table and the streamed/in-memory ratios."""
    lines = [f"### Image folder at scale: packing, streaming and memory ({args.n:,} synthetic {args.size}x{args.size} "
             f"RGB images)\n", head.rstrip("\n"),
             f"- data: benchmarks/synth_images.py, {synth['counts']['train']:,} train + {synth['counts']['test']:,} "
             f"test PNGs, {synth['classes']} classes, seed {synth['seed']} (synthetic: the accuracies say nothing "
             "about real photos)",
             f"- models: teacher resnet width 16, blocks [1, 1, 1], stem stride 2; student mobilenet width 0.5, stem stride 2; "
             f"{args.epochs} epoch(s) each, batch 128, AdamW 3e-3; KD with a 2-view teacher cache; device "
             "raspberry_pi_4, onnxruntime-int8",
             f"- packing (fresh process, empty pack folder): {packed['wall_s']:.1f} s, peak RSS "
             f"{mib(packed['peak_tree_rss_bytes'])}, pack files {mib(packed['pack_bytes'])}; the runs below reuse "
             "that pack",
             "- train images/s: n_train x epochs over the epochs' training seconds (logs/<role>.jsonl); peak RSS: "
             f"summed over the run's process tree, and its main process alone, sampled every {SAMPLE_S} s\n",
             table(runs)]
    r = ratios(runs)
    if r:
        lines.append("\nStreamed / in-memory training images/s of the two runs above: " +
                     ", ".join(f"{role} {v:.2f}x" for role, v in r.items()) + ".")
    if probed:
        lines.append(
            f"\nThroughput probe (one process, the student alone, {probed['steps']} steps of 128, streamed and "
            f"in-memory alternating over {probed['rounds']} rounds after a warm-up round): streamed "
            f"{', '.join(f'{v:.0f}' for v in probed['images_per_s']['streamed'])} images/s, in memory "
            f"{', '.join(f'{v:.0f}' for v in probed['images_per_s']['in_memory'])}; medians "
            f"{probed['median']['streamed']:.0f} and {probed['median']['in_memory']:.0f}: streamed / in-memory "
            f"= {probed['ratio']:.2f}x.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="synthetic images in all (train + test)")
    ap.add_argument("--size", type=int, default=96, help="pixels, square")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--root", type=Path, default=None, help="the synthetic folder (default bench_runs/synth_N_S)")
    ap.add_argument("--out", type=Path, default=None, help="configs, logs, pack and run folders "
                                                             "(default bench_runs/data_scale_N_S)")
    ap.add_argument("--epochs", type=int, default=1, help="training epochs of every model")
    ap.add_argument("--compare-in-memory", action="store_true",
                    help="also run with data.options.in_memory: true (the whole split as float32 in RAM)")
    ap.add_argument("--probe-steps", type=int, default=40, help="with --compare-in-memory: steps per probe epoch")
    ap.add_argument("--probe-rounds", type=int, default=5)
    ap.add_argument("--key", default="data_scale", help="section of docs/benchmarks.md to replace")
    ap.add_argument("--dry-run", action="store_true", help="generate the folder, write the configs, print the "
                                                           "commands, run nothing else")
    args = ap.parse_args()
    if args.n < 2 * args.classes or args.epochs < 1:
        ap.error("--n must hold at least 2 images per class and --epochs must be at least 1")
    t0 = time.perf_counter()
    label = f"{args.n // 1000}k" if args.n % 1000 == 0 else str(args.n)
    folder = (args.root or ROOT / "bench_runs" / f"synth_{label}_{args.size}").resolve()
    out = (args.out or ROOT / "bench_runs" / f"data_scale_{label}_{args.size}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    pack_dir = out / "pack"
    synth = generate(folder, args.n, args.size, args.classes)
    variants = [False, True] if args.compare_in_memory else [False]
    if args.dry_run:
        for in_memory in variants:
            cfg = write_config(folder, args.size, pack_dir, args.epochs, in_memory, out)
            print(f"would run: {cli()} run {cfg} --out {out / f'run_{cfg.stem}'} --overwrite --jsonl")
        print(f"would pack: {sys.executable} -c {PACK_CODE!r} {folder} {args.size} {pack_dir}")
        return
    packed = pack(folder, args.size, pack_dir, out)
    print(f"packed in {packed['wall_s']:.1f} s, peak RSS {mib(packed['peak_tree_rss_bytes'])}", flush=True)
    runs = []
    for in_memory in variants:
        runs.append(pipeline(folder, args.size, pack_dir, args.epochs, in_memory, out))
        print(table(runs[-1:]), flush=True)
    probed = probe(folder, args.size, pack_dir, args.probe_steps, args.probe_rounds, STUDENT) \
        if args.compare_in_memory else None
    from record import header, replace_section  # imports torch; here so that --dry-run needs neither

    wall = time.perf_counter() - t0
    text = body(args, synth, packed, runs, header(wall), probed)
    replace_section(args.key, text)
    raw = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "synth": synth,
           "pack": packed, "runs": runs, "streamed_over_in_memory": ratios(runs), "probe": probed, "wall_s": round(wall, 1)}
    dest = ROOT / "bench_runs" / f"data_scale_{args.key}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(raw, indent=2) + "\n")
    print(text + f"\nraw figures: {dest}")


if __name__ == "__main__":
    main()

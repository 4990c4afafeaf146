"""Fashion-MNIST epoch time of the in-memory data path, this checkout against an earlier commit, in one run.

    python benchmarks/epoch_time.py --ref 562ac98 [--rounds 3] [--steps 200] [--key fashion_epoch_time]

The earlier commit is checked out as a git worktree under bench_runs/; each round trains the 97.6K-param
three-stage student (the fashion_mnist config's) for two epochs of --steps batches in a fresh interpreter per
tree, alternating the trees so that both see the same machine load, and keeps the second epoch's training
seconds (the first warms the allocator). The verdict compares the medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent
TRAIN = """
import json, sys, torch
from edgedistill.config import AugmentConfig, TrainConfig
from edgedistill.data import load_dataset
from edgedistill.distill.ce import CrossEntropy
from edgedistill.models import create_model
from edgedistill.train.trainer import Trainer, batch_source
torch.manual_seed(0)
d = load_dataset("fashion_mnist")
model = create_model("convnet", d.input_shape, d.num_classes, {"channels": [32, 48, 56], "convs_per_stage": 2,
                                                               "head": "avg"})
ce = CrossEntropy()
cfg = TrainConfig(epochs=2, batch_size=128, optimizer="sgd", lr=0.1, max_steps_per_epoch=int(sys.argv[1]))
trainer = Trainer(cfg, ce, batch_source(ce, AugmentConfig(crop_padding=2, hflip=True)), torch.device("cpu"), 0, "s")
result = trainer.fit(model, d.x_train, d.y_train, d.x_val, d.y_val)
import edgedistill
assert edgedistill.__file__.startswith(sys.argv[2]), edgedistill.__file__
print(json.dumps([row["seconds"] for row in result.history]))
"""


def worktree(ref: str) -> Path:
    """The ref checked out beside the runs (bench_runs/ref_<sha>), made once."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    path = ROOT / "bench_runs" / f"ref_{sha}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return path


def epoch_seconds(src: Path, steps: int) -> float:
    """The second epoch's training seconds with edgedistill imported from `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", TRAIN, str(steps), str(src)], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="562ac98", help="the commit to compare against")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200, help="batches of 128 per epoch")
    ap.add_argument("--key", default="fashion_epoch_time")
    args = ap.parse_args()
    t0 = time.perf_counter()
    trees = {"this checkout": ROOT / "src", f"ref {args.ref}": worktree(args.ref) / "src"}
    times: dict[str, list[float]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, src in (trees.items() if r % 2 == 0 else reversed(trees.items())):
            times[name].append(epoch_seconds(src, args.steps))
            print(f"round {r + 1}: {name} {times[name][-1]:.2f} s", flush=True)
    now, ref = (statistics.median(v) for v in times.values())
    rows = [f"| {name} | {', '.join(f'{s:.2f}' for s in v)} | {statistics.median(v):.2f} |"
            for name, v in times.items()]
    text = "\n".join([
        f"### Fashion-MNIST epoch time: this checkout against {args.ref} (in-memory data path)\n",
        header(time.perf_counter() - t0).rstrip("\n"),
        f"- student convnet [32, 48, 56] x2, avg head (97.6K params), SGD, batch 128, crop 2 + flip, "
        f"{args.steps} steps an epoch; the second epoch's training seconds, {args.rounds} rounds alternating\n",
        "| code | epoch seconds per round | median |", "|---|---|---|", *rows,
        f"\nThis checkout / {args.ref}: {now / ref:.3f}x the epoch time "
        f"({'within' if abs(now / ref - 1) <= 0.05 else 'outside'} 5%).\n"])
    replace_section(args.key, text)
    print(text)


if __name__ == "__main__":
    main()

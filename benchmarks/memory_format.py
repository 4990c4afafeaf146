"""Training speed in NCHW against channels-last (train.channels_last) for the Fashion-MNIST teacher and students.

    python benchmarks/memory_format.py [--rounds 3] [--key memory_format]

Each model trains through the library's Trainer on the real Fashion-MNIST rows with the config's augmentation and
precision, for two epochs of a few batches; the second epoch's seconds are kept (the first warms the allocator and
oneDNN's kernel cache). The two memory orders alternate within each round, so both see the same machine load, and
the verdict compares the medians. Validation reads 512 rows, so the seconds are mostly training steps.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from edgedistill.config import resolve_config
from edgedistill.data import load_dataset
from edgedistill.distill.ce import CrossEntropy
from edgedistill.models import count_params, create_model
from edgedistill.train.trainer import Trainer, batch_source
from record import header, replace_section

ROOT = Path(__file__).resolve().parent.parent
MODELS = {  # name: (family, args, batches per timed epoch)
    "teacher w64": ("resnet", {"width": 64, "blocks": [2, 2, 2]}, 30),
    "student 100k": ("convnet", {"channels": [32, 48, 56], "convs_per_stage": 2, "head": "avg"}, 80),
    "student 15k": ("convnet", {"channels": [8, 16, 26], "convs_per_stage": 2, "head": "avg"}, 120),
}


def epoch_seconds(family: str, args: dict, steps: int, channels_last: bool, data, cfg) -> float:
    torch.manual_seed(0)
    model = create_model(family, data.input_shape, data.num_classes, args)
    train = cfg.student.train.model_copy(update={"epochs": 2, "max_steps_per_epoch": steps,
                                                 "channels_last": channels_last})
    ce = CrossEntropy()
    trainer = Trainer(train, ce, batch_source(ce, cfg.data.augment), torch.device("cpu"), 0, "bench")
    result = trainer.fit(model, data.x_train, data.y_train, data.x_val[:512], data.y_val[:512])
    return result.history[1]["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist.yaml"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--key", default="memory_format")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = resolve_config(args.config, [])
    data = load_dataset("fashion_mnist")
    rows = []
    for name, (family, margs, steps) in MODELS.items():
        times: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for cl in ((False, True) if r % 2 == 0 else (True, False)):
                times[cl].append(epoch_seconds(family, margs, steps, cl, data, cfg))
                print(f"{name} round {r + 1} {'channels_last' if cl else 'NCHW'}: {times[cl][-1]:.2f} s", flush=True)
        nchw, nhwc = statistics.median(times[False]), statistics.median(times[True])
        params = count_params(create_model(family, data.input_shape, data.num_classes, margs))
        rows.append(f"| {name} | {family} {margs} | {params:,} | {steps} | "
                    f"{', '.join(f'{s:.2f}' for s in times[False])} | {', '.join(f'{s:.2f}' for s in times[True])} | "
                    f"{nchw / nhwc:.2f}x |")
    train = cfg.student.train
    text = "\n".join([
        "### Training speed: NCHW against channels-last (train.channels_last), Fashion-MNIST\n",
        header(time.perf_counter() - t0).rstrip("\n"),
        f"- `{Path(args.config).name}`'s student recipe for every model: {train.optimizer}, batch {train.batch_size}, "
        f"precision {train.precision}, augmentation {cfg.data.augment.model_dump(exclude_defaults=True)}; the second "
        f"epoch's seconds, {args.rounds} rounds alternating the two orders\n",
        "| model | arch | params | batches per epoch | NCHW seconds | channels-last seconds | speed-up (medians) |",
        "|---|---|---|---|---|---|---|", *rows,
        "\nA speed-up under 1x means channels-last is slower for that model: here it helps the two wide models and "
        "slows the narrow 15k student, so the setting is per role and off by default.\n"])
    if args.key:  # an empty key keeps a trial run out of the docs
        replace_section(args.key, text)
    print(text)


if __name__ == "__main__":
    main()

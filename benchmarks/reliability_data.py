"""The small real datasets and configs benchmarks/reliability_inputs.py runs its cases on: scikit-learn's wine as a
CSV, its digits as a folder of PNGs, and the tiny MNIST-1D config."""
from __future__ import annotations

from pathlib import Path

import numpy as np

TRAIN = {"epochs": 1, "batch_size": 32, "lr": 0.003, "max_steps_per_epoch": 4}


def tiny(data: dict | None = None, teacher: str = "resnet", student: str = "convnet", targs=None, sargs=None) -> dict:
    return {"name": "tiny", "seed": 0, "data": {"name": "mnist1d", "limit_train": 200, "limit_test": 100, **(data or {})},
            "teacher": {"model": teacher, "args": targs or {}, "train": dict(TRAIN)},
            "student": {"model": student, "args": sargs or {}, "train": dict(TRAIN)},
            "deploy": {"enabled": False}}


def wine(path: Path, shuffle: bool = False) -> Path:
    from sklearn.datasets import load_wine

    b = load_wine()
    y = np.random.default_rng(1).permutation(b.target) if shuffle else b.target
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([",".join(b.feature_names + ["label"])] +
                              [",".join(f"{v:.6g}" for v in x) + f",{t}" for x, t in zip(b.data, y)]) + "\n")
    return path


def wine_cfg(path: str, epochs: int = 40) -> dict:
    cfg = tiny({"name": "csv", "path": path}, "mlp", "mlp", {"hidden": [32]}, {"hidden": [8]})
    cfg["deterministic"] = True
    cfg["teacher"]["train"] = {"epochs": 3, "batch_size": 16, "lr": 0.01}
    cfg["student"]["train"] = {"epochs": epochs, "batch_size": 16, "lr": 0.01}
    return cfg


def digits_pngs(root: Path) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    b = load_digits()
    for i, (img, t) in enumerate(zip(b.images, b.target)):
        (root / str(t)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img * 255 / 16).astype(np.uint8)).save(root / str(t) / f"{i}.png")
    return root

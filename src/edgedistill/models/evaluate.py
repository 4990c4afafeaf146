"""Scoring a model: its logits on a split (`predict_logits`), and task metrics from scikit-learn with its footprint;
the same code scores torch and runtime outputs."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from edgedistill.models import count_params


def model_input(rows, accel: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
    """These rows (an array, a slice of a stored split, a batch) as a tensor of their own on `accel`: a model that
    edits its input in place (x.sub_(mean)) must change neither the stored data nor what another model reads."""
    return torch.as_tensor(rows).to(accel, dtype=dtype, copy=True)


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray | torch.Tensor, accel: torch.device,
                   batch_size: int = 1024, max_batch_bytes: int = 2**23) -> torch.Tensor:
    """Logits for every row of x, computed in eval mode, returned on the CPU. Batches hold at most 8 MB of input:
    1024 camera images at 96x96 would take a model's early activations past a gigabyte."""
    model.eval()
    row_bytes = 4 * int(np.prod(x.shape[1:])) if len(x) else 1
    batch_size = max(1, min(batch_size, max_batch_bytes // row_bytes))
    outs = [model(model_input(x[i:i + batch_size], accel)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro precision/recall/F1, a per-class report and the confusion matrix (rows: true class).

    Macro averages run over the classes the test split holds: a class with no test sample has no recall to
    average, and counting it as 0 would understate every model alike. Such classes are listed in
    `absent_classes`; their per-class rows keep support 0."""
    # imported here: sklearn (with the scipy and pandas it loads) is 1-2 s of every CLI start, and a command
    # refused on its config or inputs never scores a model
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, \
        precision_recall_fscore_support
    labels = list(range(len(class_names)))
    present = sorted(int(c) for c in np.unique(y_true))
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=present, average="macro",
                                                               zero_division=0)
    report = classification_report(y_true, y_pred, labels=labels, target_names=class_names, output_dict=True,
                                   zero_division=0)
    per_class = {name: {"precision": report[name]["precision"], "recall": report[name]["recall"],
                        "f1": report[name]["f1-score"], "support": int(report[name]["support"])}
                 for name in class_names}
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "absent_classes": [class_names[i] for i in labels if i not in present],
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def model_footprint(model: nn.Module) -> dict:
    """Parameter count and fp32 bytes of every floating-point tensor in the state_dict (weights and norm stats)."""
    params = count_params(model)
    float_elems = sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    return {"params": int(params), "size_fp32_bytes": int(float_elems * 4)}

"""Charts for the HTML report, drawn with matplotlib from metrics.json alone and returned as PNG bytes."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from edgedistill.roles import COMPARED, Role, label  # noqa: E402

COLORS = {Role.TEACHER: "#1f4e79", Role.STUDENT_SCRATCH: "#9e9e9e", Role.STUDENT_KD: "#d9822b",
          Role.TEACHER_PRUNED: "#2e7d32", Role.STUDENT_KD_QAT: "#8e24aa"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def training_curves(models: dict) -> bytes | None:
    """Training loss and validation accuracy per epoch for every model that was trained in the run."""
    trained = {r: m["train"]["history"] for r, m in models.items() if m.get("train")}
    if not trained:
        return None
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.6))
    for role, hist in trained.items():
        epochs = [h["epoch"] for h in hist]
        ax_loss.plot(epochs, [h["train_loss"] for h in hist], label=label(role), color=COLORS.get(role))
        ax_acc.plot(epochs, [100 * h["val_accuracy"] for h in hist], label=label(role),
                    color=COLORS.get(role))
    ax_loss.set(xlabel="epoch", ylabel="training loss (incl. KD terms)", title="Training loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def confusion_matrices(models: dict, class_names: list[str], roles: tuple[Role, ...] = (Role.TEACHER, Role.STUDENT_KD)) -> bytes:
    roles = tuple(r for r in roles if r in models)
    fig, axes = plt.subplots(1, len(roles), figsize=(5.2 * len(roles), 4.6))
    axes = np.atleast_1d(axes)
    short = [n[:10] for n in class_names]
    for ax, role in zip(axes, roles):
        cm = np.array(models[role]["test"]["confusion_matrix"], dtype=float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set(title=f"{label(role)}: {100 * models[role]['test']['accuracy']:.2f}%",
               xlabel="predicted class", ylabel="true class", xticks=range(len(short)), yticks=range(len(short)))
        ax.set_xticklabels(short, rotation=60, ha="right", fontsize=7)
        ax.set_yticklabels(short, fontsize=7)
        if len(short) <= 12:
            for i in range(len(short)):
                for j in range(len(short)):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                                color="white" if norm[i, j] > 0.5 else "black")
    return _png(fig)


def per_class_f1(models: dict, class_names: list[str]) -> bytes:
    roles = [r for r in (*COMPARED, Role.TEACHER_PRUNED) if r in models]
    x = np.arange(len(class_names))
    width = 0.8 / len(roles)
    fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(class_names) + 3), 3.6))
    for i, role in enumerate(roles):
        f1 = [models[role]["test"]["per_class"][c]["f1"] for c in class_names]
        ax.bar(x + (i - (len(roles) - 1) / 2) * width, f1, width, label=label(role), color=COLORS.get(role))
    ax.set(xlabel="class", ylabel="F1 score (test)", title="Per-class F1", xticks=x, ylim=(0, 1.05))
    ax.set_xticklabels([c[:12] for c in class_names], rotation=30, ha="right", fontsize=8)
    ax.legend(fontsize=8, ncol=len(roles))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def tradeoff(points: list[dict], x_key: str, x_label: str, budget: float | None, budget_label: str,
             title: str) -> bytes:
    """Accuracy against a cost (size or latency), one marker per model and format, the device budget as a line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for p in points:
        marker = "o" if p["dtype"] == "fp32" else "s"
        ax.scatter(p[x_key], 100 * p["accuracy"], color=COLORS.get(p["role"], "#555"), marker=marker, s=60,
                   edgecolor="black", linewidth=0.5)
        ax.annotate(p["label"], (p[x_key], 100 * p["accuracy"]), textcoords="offset points", xytext=(6, 4),
                    fontsize=7)
    if budget:
        ax.axvline(budget, color="#c62828", linestyle="--", linewidth=1.5)
        ax.text(budget, ax.get_ylim()[0], f" {budget_label}", color="#c62828", fontsize=8, rotation=90,
                va="bottom", ha="right")
    ax.set_xscale("log")
    ax.set(xlabel=x_label, ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)

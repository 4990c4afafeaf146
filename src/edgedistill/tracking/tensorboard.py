"""TensorBoard: event files in the run folder's tensorboard/, one TensorBoard run per role (teacher,
student_scratch, student_kd, ...) so their curves overlay in one chart, and `run/` for the run's config (text and
the HParams tab), its tags and its comparison. `tensorboard --logdir runs` shows every run below that folder, a
--seeds folder's seeds side by side. A resumed role rewrites its curve behind a purge step, so TensorBoard shows it
once, unbroken.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedistill.tracking import Backend

FOLDER = "tensorboard"
RUN_GROUP = "run"  # keys without a `<role>/` prefix: the config, tags, the comparison and the seeds summary


class TensorBoardRun:
    title = "TensorBoard"

    def __init__(self):
        self.root: Path | None = None
        self.where = FOLDER
        self.failed = False
        self.writers: dict[str, Any] = {}

    def start(self, run_dir: Path, run_name: str, resume: bool) -> None:
        self.root = run_dir / FOLDER
        self.where = str(self.root)
        if resume:  # the config and tags are written again below: the first copies are purged
            self._writer(RUN_GROUP, purge_step=0)

    def _writer(self, group: str, purge_step: int | None = None) -> Any:
        """The SummaryWriter of one TensorBoard run; with purge_step, a new one that hides that run's earlier
        events from that step on."""
        if group in self.writers and purge_step is None:
            return self.writers[group]
        from torch.utils.tensorboard import SummaryWriter

        if group in self.writers:
            self.writers[group].close()
        self.writers[group] = SummaryWriter(str(self.root / group), purge_step=purge_step)
        return self.writers[group]

    def _add(self, metrics: dict[str, float], step: int) -> set[str]:
        groups = set()
        for key, value in metrics.items():
            head, slash, tail = key.partition("/")
            group, tag = (head, tail) if slash else (RUN_GROUP, key)
            self._writer(group).add_scalar(tag, value, step)
            groups.add(group)
        return groups

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        for group in self._add(metrics, step):  # on disk at once: a killed run keeps every point it was told
            self.writers[group].flush()

    def restore_curve(self, prefix: str, points: list[tuple[int, dict[str, float]]]) -> None:
        writer = self._writer(prefix, purge_step=points[0][0])
        for step, metrics in points:
            self._add(metrics, step)
        writer.flush()

    def log_params(self, params: dict) -> None:
        from torch.utils.tensorboard.summary import hparams

        writer = self._writer(RUN_GROUP)
        rows = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        writer.add_text("config", f"| key | value |\n|---|---|\n{rows}")
        for summary in hparams(params, {}):
            writer.file_writer.add_summary(summary)
        writer.flush()

    def set_tags(self, tags: dict[str, str]) -> None:
        writer = self._writer(RUN_GROUP)
        for key, value in tags.items():
            writer.add_text(key, value)
        writer.flush()

    def log_artifacts(self, run_dir: Path, names: list[str]) -> None:
        """Nothing to copy: the event files already sit in the run folder beside these files."""

    def child(self) -> "TensorBoardRun":
        return TensorBoardRun()

    def close(self, status: str) -> None:
        if self.root is not None:
            self._writer(RUN_GROUP).add_text("status", status)
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


BACKEND = Backend(name="tensorboard", modules=("tensorboard",), open=lambda tc, experiment, saved: TensorBoardRun())

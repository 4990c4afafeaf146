"""What the pipeline asks of a teacher that is loaded, never trained, and not a module torch.export can trace: the
files it keeps in the run folder, what metrics.json says of it, and why it is not exported."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn


class ExternalTeacher(nn.Module):
    not_exported: str = ""  # the note that replaces its deploy record

    def keep(self, run_dir: Path) -> list[str]:
        """Copy the files it reads into the run folder; returns their names there."""
        raise NotImplementedError

    def run_record(self) -> dict:
        """Its footprint, kept files and source, merged into its metrics.json record."""
        raise NotImplementedError

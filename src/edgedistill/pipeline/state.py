"""The run state every stage takes and returns: what was checked up front, what has been trained, what was scored."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgedistill.config import ExperimentConfig, ModelConfig
from edgedistill.data import DataSplits
from edgedistill.deploy import DeployPlan, DeviceProfile
from edgedistill.results import ModelRecord
from edgedistill.roles import Role
from edgedistill.tracking import Tracking
from edgedistill.train.trainer import TrainResult


@dataclass
class Trained:
    """One model of the run: its weights, how it was trained (None when loaded) and the config that built it."""

    model: nn.Module
    result: TrainResult | None
    mcfg: ModelConfig


@dataclass
class Run:
    """Everything a stage may read or add. Built by prepare() before any folder is touched; each stage fills in more."""

    cfg: ExperimentConfig
    accel: torch.device
    profile: DeviceProfile  # the edge device; `accel` is the torch device that trains
    data: DataSplits
    loaded_teacher: nn.Module  # built and, with teacher.checkpoint, loaded and checked; trained by the teacher stage
    early_fit: dict | None
    plan: DeployPlan  # the formats to deploy to `profile`, and the int8 input width: decided once, by prepare()
    run_dir: Path = Path()
    progress: bool = True
    search: dict | None = None
    trained: dict[Role, Trained] = field(default_factory=dict)
    records: dict[Role, ModelRecord] = field(default_factory=dict)  # metrics.json's "models", role by role
    test_logits: dict[Role, np.ndarray] = field(default_factory=dict)
    prune_info: dict | None = None
    metrics: dict | None = None
    tracking: Tracking = field(default_factory=Tracking)  # empty unless tracking.backends

    @property
    def teacher(self) -> nn.Module:
        return self.trained[Role.TEACHER].model

    def log_path(self, role: Role) -> Path:
        return self.run_dir / "logs" / f"{role}.jsonl"

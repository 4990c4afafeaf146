"""The words a run names its models by, one vocabulary per meaning:

- `Role`: a model the pipeline trains and records (metrics.json's "models" keys, checkpoints, exports, reports);
- `Side`: which half of the teacher-student pair a model is: the config section that describes it (`teacher:`,
  `student:`), the side `build_model` builds, the side the model zoo suggests a model for, and the kind of input
  file the teacher is built from (inputs.json).
"""
from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """An enum whose members are their values wherever they are printed, formatted or compared with a string."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Role(_Word):
    TEACHER = "teacher"
    TEACHER_PRUNED = "teacher_pruned"  # the trained teacher, channel-pruned and fine-tuned by KD from itself
    STUDENT_SCRATCH = "student_scratch"  # the control: the student trained without a teacher
    STUDENT_KD = "student_kd"
    STUDENT_KD_QAT = "student_kd_qat"  # the KD student fine-tuned with int8 simulated

    @property
    def label(self) -> str:
        return LABELS[self]

    @property
    def side(self) -> "Side":
        """The config section that builds this role's architecture."""
        return Side.TEACHER if self in (Role.TEACHER, Role.TEACHER_PRUNED) else Side.STUDENT


class Side(_Word):
    TEACHER = "teacher"
    STUDENT = "student"


LABELS = {Role.TEACHER: "teacher", Role.STUDENT_SCRATCH: "student (scratch)", Role.STUDENT_KD: "student (KD)",
          Role.TEACHER_PRUNED: "pruned teacher (KD)", Role.STUDENT_KD_QAT: "student (KD + QAT)"}
COMPARED = (Role.TEACHER, Role.STUDENT_SCRATCH, Role.STUDENT_KD)  # every run has these three
CHOOSABLE = tuple(r for r in Role if r is not Role.STUDENT_KD_QAT)  # deploy.roles: the QAT student follows student_kd


def label(role: str) -> str:
    """A role's name in tables and plots; a key no role knows is shown as it is."""
    try:
        return Role(role).label
    except ValueError:
        return role

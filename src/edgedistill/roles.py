"""The models a run trains, by role: the names metrics.json, checkpoints, exports and reports all use."""
from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    TEACHER = "teacher"
    TEACHER_PRUNED = "teacher_pruned"  # the trained teacher, channel-pruned and fine-tuned by KD from itself
    STUDENT_SCRATCH = "student_scratch"  # the control: the student trained without a teacher
    STUDENT_KD = "student_kd"
    STUDENT_KD_QAT = "student_kd_qat"  # the KD student fine-tuned with int8 simulated

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {Role.TEACHER: "teacher", Role.STUDENT_SCRATCH: "student (scratch)", Role.STUDENT_KD: "student (KD)",
          Role.TEACHER_PRUNED: "pruned teacher (KD)", Role.STUDENT_KD_QAT: "student (KD + QAT)"}
COMPARED = (Role.TEACHER, Role.STUDENT_SCRATCH, Role.STUDENT_KD)  # every run has these three


def label(role: str) -> str:
    """A role's name in tables and plots; a key no role knows is shown as it is."""
    try:
        return Role(role).label
    except ValueError:
        return role

"""Compress the teacher toward the student: structured channel pruning (Torch-Pruning) to a size or MAC budget."""
from edgedistill.compress.prune import prune_to_budget

__all__ = ["prune_to_budget"]

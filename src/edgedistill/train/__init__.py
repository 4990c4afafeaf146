"""Training: the loop that trains teacher, scratch and KD students alike (trainer.py), the teacher-output cache,
augmentation and mixing, the epoch plan and exact resume."""

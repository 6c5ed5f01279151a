"""Learners: GRPO (each config beside its trainer), supervised warm starts, checkpoints and distributed helpers."""

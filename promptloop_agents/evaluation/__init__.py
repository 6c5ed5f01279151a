"""Evaluation: the held-out harness (bootstrap intervals, paired differences), its agents and its pictures."""

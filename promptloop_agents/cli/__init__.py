"""The ``promptloop`` command line (``python -m promptloop_agents.cli`` runs it too)."""

from promptloop_agents.cli.main import main

__all__ = ["main"]

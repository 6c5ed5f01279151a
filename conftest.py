"""Root of the test collection (``tests/`` and the doctests of ``promptloop_env`` and ``promptloop_agents``)."""

# --doctest-modules would import every conftest.py as a module too, and the ones in tests/ share a basename.
collect_ignore_glob = ["tests/conftest.py", "tests/*/conftest.py"]

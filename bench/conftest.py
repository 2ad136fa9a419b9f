"""Collect the engine suite: ``pytest bench/ --benchmark-enable`` (bench/ is outside testpaths, so
the default ``python -m pytest`` never runs it; ``bench_*.py`` does not match pytest's default
``test_*.py`` pattern, so the suite is named here rather than in pyproject)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # bench modules import each other by name

SUITES = {"bench_engine.py"}


def pytest_collect_file(file_path, parent):
    if file_path.name in SUITES and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None

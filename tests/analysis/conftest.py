"""Fixtures of the analysis tests."""

import pytest
from analysis_stores import write_parabola_store


@pytest.fixture
def parabola_store(tmp_path):
    return write_parabola_store(tmp_path / "store.zarr")

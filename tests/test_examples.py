"""The examples in examples/ run at a tiny size and write what they say."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np

from losslines.store import open_store

REPO = Path(__file__).resolve().parents[1]


def test_custom_loop_example(tmp_path, monkeypatch, capsys):
    out = tmp_path / "custom.zarr"
    monkeypatch.setattr(sys, "argv", ["custom_loop.py", "--out", str(out), "--steps", "6", "--every", "3",
                                      "--spacing", "0.25"])
    runpy.run_path(str(REPO / "examples" / "custom_loop.py"), run_name="__main__")
    assert "2 lines" in capsys.readouterr().out
    store = open_store(out)
    assert store.status == "complete" and store.committed_lines == 2
    np.testing.assert_array_equal(store["step"][...], [0, 3])
    assert (store["update_step"][...] > 0).all()
    assert store["sample_loss_val"].shape == (2, store.position.size, 297)

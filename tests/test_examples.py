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


def test_notebook_example_draws_three_figures_from_a_store(tmp_path, monkeypatch, capsys, tiny_config):
    from losslines.runner.driver import run

    cfg = tiny_config(tmp_path, "threads=1")
    run(cfg, progress=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["notebook.py", str(cfg.store_path)])
    runpy.run_path(str(REPO / "examples" / "notebook.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "LineStore(" in out and "<AnalysisResult of" in out and "s_opt" in out and "count" in out
    png = tmp_path / "notebook_figures.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebook_figures.png", "run.zarr", "run.zarr.ckpt"]


def test_lightning_example(tmp_path, monkeypatch, capsys):
    import pytest

    pytest.importorskip("lightning")
    out = tmp_path / "lightning.zarr"
    monkeypatch.setattr(sys, "argv", ["lightning_callback.py", "--out", str(out), "--steps", "6", "--every", "3",
                                      "--spacing", "0.25"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice (workers, loggers) is not the example's point
        runpy.run_path(str(REPO / "examples" / "lightning_callback.py"), run_name="__main__")
    assert "2 lines at steps [0, 3]" in capsys.readouterr().out
    store = open_store(out)
    assert store.status == "complete" and store.committed_lines == 2
    assert (store["batch_ids"][...] >= 0).all() and np.isfinite(store["loss_train"][...]).any()


def test_huggingface_example(tmp_path, monkeypatch, capsys):
    import warnings

    import pytest

    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    out = tmp_path / "hf.zarr"
    monkeypatch.setattr(sys, "argv", ["huggingface_callback.py", "--out", str(out), "--steps", "4", "--every", "2",
                                      "--spacing", "0.25"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Trainer's advice is not the example's point
        runpy.run_path(str(REPO / "examples" / "huggingface_callback.py"), run_name="__main__")
    assert "2 lines at steps [0, 2]" in capsys.readouterr().out
    store = open_store(out)
    assert store.status == "complete" and np.isfinite(store["loss_train"][...]).any()
    assert (store["slope0_batch"][...] < 0).all()  # each step goes downhill on its own batch

"""Every config in configs/ runs end to end at a tiny size (overrides via --set), producing a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from losslines.cli import main
from losslines.runner.config import load_config
from losslines.store import open_store

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.toml"))

# What makes a config tiny: few steps, a coarse grid, tiny widths; the rest is the config's own.
TINY = ["train.steps=3", "train.checkpoint_every=0", "measure.every=1", "measure.spacing=0.25",
        "measure.max_enlargements=0", "threads=1", "device='cpu'"]
TINY_CIFAR = ["data.fraction=0.5", "data.n_val=6", "train.batch_size=8", "measure.bn_group=8",
              "model.width=0.125"]
TINY_TEXT = ["data.fraction=0.003", "data.n_val=6", "data.options.seq_len=16", "data.options.max_bytes=200000",
             "train.batch_size=8", "model.width=0.125"]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_runs_at_tiny_size(config, tmp_path, disk_writers, capsys):
    cfg = load_config(config)
    overrides = list(TINY)
    if cfg.data.name == "cifar10":
        disk_writers.cifar(tmp_path / "data" / "cifar10", "cifar10", per_file={"train": 8, "test": 12})
        overrides += TINY_CIFAR
    elif cfg.data.name == "python_source":
        overrides += TINY_TEXT
    else:
        overrides += ["train.batch_size=32", "measure.bn_group=32"]
    out = tmp_path / "store.zarr"
    argv = ["run", str(config), "--out", str(out), "--data-root", str(tmp_path / "data"), "-q"]
    for item in overrides:
        argv += ["--set", item]
    assert main(argv) == 0, capsys.readouterr().err
    store = open_store(out)
    assert store.status == "complete" and store.committed_lines == 3
    assert store.config["model"]["name"] == cfg.model.name
    assert store.config["train"]["momentum"] == cfg.train.momentum
    assert np.isfinite(store["loss_train"][...]).all()
    for split in cfg.measure.sample_losses:
        assert store.has(f"sample_loss_{split}")
    assert main(["info", str(out)]) == 0


def test_quickstart_store_is_analysed_end_to_end(tmp_path, capsys):
    """run -> analyze on the embedded default: report, metrics and figures from a real store."""
    import json

    out = tmp_path / "qs.zarr"
    argv = ["run", str(REPO / "configs" / "quickstart.toml"), "--out", str(out), "-q"]
    for item in ["train.steps=40", "measure.every=5", "measure.spacing=0.05", "threads=1"]:
        argv += ["--set", item]
    assert main(argv) == 0, capsys.readouterr().err
    report_dir = tmp_path / "report"
    assert main(["analyze", str(out), "--out", str(report_dir), "--formats", "png"]) == 0
    assert "wrote" in capsys.readouterr().out
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics["analysed_lines"] == 8 and metrics["status"] == "complete"
    text = (report_dir / "report.md").read_text()
    assert "s_opt" in text and "![" in text
    assert sorted(p.name for p in report_dir.glob("*.png"))

"""`losslines info STORE`: the summary dict and its text form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from losslines.store import StoreLayout, StoreWriter, describe, summarize
from losslines.cli import main
from losslines.store.info import human_bytes

CONFIG = {
    "name": "quickstart",
    "model": {"name": "resnet20", "width": 16},
    "data": {"name": "cifar10", "train_fraction": 0.08},
    "optimizer": "sgd",
    "seed": 3,
}


@pytest.fixture
def store_path(tmp_path):
    layout = StoreLayout(n_points=5, n_train=6, n_val=3, batch_size=2, sample_losses=("train", "val"),
                         sample_dtype="float16", n_directions=3, line_chunk=4)
    path = tmp_path / "run.zarr"
    positions = np.linspace(-0.012, 0.012, 5)
    ids = {"train": np.arange(6), "val": np.arange(3)}
    with StoreWriter.create(path, layout, positions=positions, sample_ids=ids, attrs={"config": CONFIG},
                            capacity=8) as writer:
        for step in (10, 20, 30, 40, 50):
            writer.append({"step": step})
        writer.append_directions({"step": 20})
    return path


def test_summarize(store_path):
    s = summarize(store_path)
    json.dumps(s)  # machine-readable as well
    assert (s["format"], s["status"]) == (2, "complete")
    assert s["lines"] == {"committed": 5, "allocated": 5, "steps": [10, 50]}  # complete: trimmed
    assert s["grid"]["points"] == 5
    assert s["grid"]["spacing"] == pytest.approx(0.006)
    assert (s["grid"]["min"], s["grid"]["max"]) == pytest.approx((-0.012, 0.012))
    assert s["samples"] == {"train": 6, "val": 3, "batch": 2}
    assert s["sample_losses"] == {"sample_loss_train": "float16", "sample_loss_val": "float16"}
    assert s["config"] == {"name": "quickstart", "model": 'resnet20 {"width": 16}',
                           "data": 'cifar10 {"train_fraction": 0.08}', "optimizer": "sgd"}
    assert s["directions"] == {"per_line": 3, "committed": 1, "allocated": 1, "steps": [20, 20]}
    assert s["bytes_stored"] > 0
    assert s["created"] and s["finished"]


def test_info_json_is_the_summary(store_path, capsys):
    assert main(["info", str(store_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = json.loads(json.dumps(summarize(store_path)))
    assert printed == expected and printed["lines"]["committed"] == 5


def test_describe_text(store_path):
    text = describe(store_path)
    for piece in ("losslines v2, status complete", "lines      5 committed\n", "steps      10 .. 50",
                  "5 points, spacing 0.006, s in [-0.012, 0.012]", "train 6, val 3, batch 2",
                  "sample_loss_train (float16)", "directions 3 per line, 1 committed",
                  "model      resnet20", "optimizer  sgd", "on disk", "created    "):
        assert piece in text, piece


def test_describe_an_empty_store_without_config(tmp_path):
    layout = StoreLayout(n_points=1, n_train=2)
    path = tmp_path / "s.zarr"
    StoreWriter.create(path, layout, positions=np.zeros(1), sample_ids={"train": np.arange(2)}, attrs={}).close()
    text = describe(path)
    assert "steps      none yet" in text
    assert "1 point at s = 0" in text
    assert "per-sample none stored" in text
    assert "model" not in text


def test_describe_shows_why_a_run_failed(tmp_path):
    layout = StoreLayout(n_points=2, n_train=2)
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(path, layout, positions=np.zeros(2) + [0.0, 1.0], sample_ids={"train": np.arange(2)},
                                attrs={})
    writer.close("failed", reason="interrupted before step 7")
    assert "status failed (interrupted before step 7)" in describe(path)


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                         (5 * 1024**3, "5.0 GiB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text

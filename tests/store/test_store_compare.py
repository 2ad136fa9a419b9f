"""diff_stores: two stores compare equal exactly when every array (bit for bit) and every
attribute but times and versions agree."""

from __future__ import annotations

import json

import numpy as np
import zarr

from losslines.store import StoreLayout, StoreWriter
from losslines.store.compare import diff_stores, main


def write(path, kit, *, seed=0, lines=5, attrs=None, layout=None):
    layout = layout or StoreLayout(n_points=4, n_train=6, batch_size=3, sample_losses=("train",), line_chunk=2)
    rng = np.random.default_rng(seed)
    with StoreWriter.create(path, layout, attrs=attrs or {"config": {"seed": 1}}, **kit.make_inputs(layout)) as w:
        for i in range(lines):
            w.append(kit.random_line(layout, rng, step=i))
    return path


def test_identical_runs_compare_equal_and_times_are_ignored(tmp_path, kit):
    a, b = write(tmp_path / "a.zarr", kit), write(tmp_path / "b.zarr", kit)
    assert zarr.open_group(str(a)).attrs["created"] != "never"
    zarr.open_group(str(b), mode="r+").update_attributes({"created": "never", "versions": {"torch": "x"}})
    assert diff_stores(a, b) == []
    assert main([str(a), str(b)]) == 0


def test_strategy_timings_are_ignored_but_the_chosen_strategy_is_not(tmp_path, kit):
    """Regression: a resumed 'auto' or 'compiled' run re-times its strategy (seconds per point,
    compile seconds), which made two stores of the same measurement compare different."""
    report = {"requested": "compiled", "chosen": "compiled", "seconds_per_point": {"compiled": 0.3},
              "compile_seconds": 15.5}
    a = write(tmp_path / "a.zarr", kit, attrs={"config": {"seed": 1}, "strategy_report": report})
    b = write(tmp_path / "b.zarr", kit, attrs={"config": {"seed": 1}, "strategy_report": {
        **report, "seconds_per_point": {"compiled": 0.2}, "compile_seconds": 4.2}})
    assert diff_stores(a, b) == []
    c = write(tmp_path / "c.zarr", kit, attrs={"config": {"seed": 1}, "strategy_report": {**report, "chosen": "loop"}})
    assert diff_stores(a, c) == ["attribute strategy_report.chosen: 'compiled' != 'loop'"]


def test_one_flipped_value_one_changed_attribute_and_a_missing_array_are_found(tmp_path, kit, capsys):
    a, b = write(tmp_path / "a.zarr", kit), write(tmp_path / "b.zarr", kit)
    raw = zarr.open_group(str(b), mode="r+")
    values = raw["sample_loss_train"][3]
    values[1, 2] = np.nextafter(values[1, 2], np.float16(np.inf))  # one ulp
    raw["sample_loss_train"][3] = values
    raw.update_attributes({"config": json.dumps({"seed": 2})})  # format 2: objects as JSON text
    found = diff_stores(a, b)
    assert any(f.startswith("array sample_loss_train: 1 values differ, first at (3, 1, 2)") for f in found), found
    assert "attribute config.seed: 1 != 2" in found
    del raw["batch_ids"]
    assert "array batch_ids: only in a" in diff_stores(a, b)
    assert main([str(a), str(b)]) == 1 and "different:" in capsys.readouterr().out


def test_nan_equals_nan_but_other_bits_do_not(tmp_path, kit):
    a, b = write(tmp_path / "a.zarr", kit), write(tmp_path / "b.zarr", kit)
    for path in (a, b):  # the same NaN in both: equal
        zarr.open_group(str(path), mode="r+")["loss_train"][0, 0] = np.nan
    assert diff_stores(a, b) == []
    zarr.open_group(str(b), mode="r+")["loss_train"][0, 1] = np.float32(1e-30)
    assert any(f.startswith("array loss_train:") for f in diff_stores(a, b))


def test_the_identity_script_finds_a_checkout_identical_to_its_own_head(tmp_path):
    """bench/store_identity.sh end to end at tiny size: HEAD's code and the working tree's write the
    same store (the working tree may differ from HEAD only outside what a run writes)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (repo / ".git").exists():
        raise AssertionError("the identity script needs a git checkout of the repository")
    tiny = ["--set", "train.steps=4", "--set", "measure.every=2", "--set", "measure.spacing=0.25",
            "--set", "measure.max_enlargements=0", "--set", "data.n_val=40", "--set", "train.checkpoint_every=0"]
    proc = subprocess.run(["bash", str(repo / "bench" / "store_identity.sh"), "HEAD", "configs/quickstart.toml", *tiny],
                          capture_output=True, text=True, timeout=600, cwd=repo,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "identical:" in proc.stdout and "0 difference(s)" in proc.stdout

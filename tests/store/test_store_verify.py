"""losslines verify: a store written by a run is valid; each kind of damage is found and named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

from losslines.cli import main
from losslines.store.verify import verify_store
from losslines.runner.driver import run


@pytest.fixture(scope="module")
def good_store(tmp_path_factory, tiny_config):
    tmp = tmp_path_factory.mktemp("verify")
    cfg = tiny_config(tmp, "train.momentum=0.0", "train.steps=6")
    run(cfg, progress=False)
    return cfg.store_path


@pytest.fixture
def damaged(good_store, tmp_path):
    copy = tmp_path / "copy.zarr"
    shutil.copytree(good_store, copy)
    return copy


def test_a_run_store_is_valid(good_store, capsys):
    assert verify_store(good_store) == []
    assert main(["verify", str(good_store)]) == 0
    assert capsys.readouterr().out.startswith("valid:")
    assert main(["verify", str(good_store), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["findings"] == [] and report["committed_lines"] == 3


def _write(path, name, index, value):
    arr = zarr.open_group(str(path), mode="r+")[name]
    data = arr[...]
    data[index] = value
    arr[...] = data


@pytest.mark.parametrize("name,index,value,check", [
    ("update_step", 1, 123.0, "update_step"),
    ("loss_train", (2, 3), 50.0, "per-sample"),
    ("slope0_batch", 0, 0.5, "sgd-slope"),
    ("position", 0, 0.7, "grid"),
])
def test_damage_is_found(damaged, name, index, value, check, capsys):
    _write(damaged, name, index, value)
    findings = verify_store(damaged)
    assert [f.check for f in findings] == [check], findings
    assert main(["verify", str(damaged)]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("invalid:")
    assert main(["verify", str(damaged), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False and [f["check"] for f in report["findings"]] == [check]
    assert report["findings"][0]["where"] == findings[0].where


def test_missing_and_unknown_arrays_are_found(damaged):
    group = zarr.open_group(str(damaged), mode="r+")
    del group["acc_val"]
    group.create_array("extra", shape=(3,), dtype="f4")
    found = {(f.check, f.where) for f in verify_store(damaged)}
    assert ("format", "acc_val") in found and ("format", "extra") in found


def test_damage_past_committed_lines_is_ignored(damaged):
    """Only committed lines are checked: a half-written line beyond the mark is not a finding."""
    # a failed store may hold rows past the mark (a complete one is trimmed and consolidated)
    zarr.open_group(str(damaged), mode="r+", use_consolidated=False).update_attributes({"status": "failed"})
    arr = zarr.open_group(str(damaged), mode="r+")["update_step"]
    arr.resize((arr.shape[0] + 2,))
    arr[-1] = 999.0
    assert verify_store(damaged) == []


def test_not_a_store_exits_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err


def test_the_sgd_slope_is_not_judged_where_the_run_switched_its_check_off(damaged):
    """Regression: a run that trains with dropout records ``sgd_slope_check = "off: ..."`` (its
    batch slope differs from −‖g‖ by design), yet verify still flagged every such line."""
    _write(damaged, "slope0_batch", 0, 0.5)
    group = zarr.open_group(str(damaged), mode="r+")
    semantics = json.loads(group.attrs["semantics"])  # format 2: objects as JSON text
    semantics["sgd_slope_check"] = "off: training uses dropout, the measurement evaluates it as the identity"
    group.update_attributes({"semantics": json.dumps(semantics)})
    assert verify_store(damaged) == []


def test_the_sgd_slope_is_not_judged_on_a_diverged_line(damaged):
    """A diverged line (batch loss at 0 above records.SGD_CHECK_MAX_LOSS) is exempt, as in the
    sampler: float32 rounding of huge logits breaks the identity by more than its tolerance."""
    _write(damaged, "slope0_batch", 0, 0.5)
    assert [f.check for f in verify_store(damaged)] == ["sgd-slope"]
    group = zarr.open_group(str(damaged), mode="r+")
    zero = int(np.flatnonzero(group["position"][:] == 0.0)[0])
    for name in ("loss_batch", "sample_loss_batch"):  # the line's batch loss at 0 (and its samples) diverged
        values = group[name][0]
        values[zero] = 2e4
        group[name][0] = values
    assert verify_store(damaged) == []

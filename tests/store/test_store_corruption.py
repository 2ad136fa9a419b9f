"""losslines verify against planted corruption: each kind is reported precisely (the check, the
array and the chunk or line), a clean store passes, and the command exits 1 with one line each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import zarr

from losslines.cli import main
from losslines.runner.driver import run
from losslines.store.verify import verify_store


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_config) -> Path:
    tmp = tmp_path_factory.mktemp("corruption")
    cfg = tiny_config(tmp, "train.momentum=0.0", "train.steps=8", "measure.n_directions=2",
                      "measure.directions_at=[2]", "train.checkpoint_every=0")
    assert run(cfg, progress=False).status == "complete"
    return Path(cfg.store.path)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _root_attrs(store: Path, **changes) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"].update(changes)
    (store / "zarr.json").write_text(json.dumps(meta))


def _resize(store: Path, name: str, lines: int) -> None:
    array = zarr.open_group(str(store), mode="r+", use_consolidated=False)[name]
    array.resize((lines,) + array.shape[1:])


def _rewrite(store: Path, name: str, values) -> None:
    zarr.open_group(str(store), mode="r+", use_consolidated=False)[name][0] = values


def _consolidated_shape(store: Path) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    meta["consolidated_metadata"]["metadata"]["lr"]["shape"] = [99]
    (store / "zarr.json").write_text(json.dumps(meta))


# kind -> (damage, expected findings as (check, where), one finding each)
CORRUPTIONS: dict[str, tuple[Callable[[Path], None], list[tuple[str, str]]]] = {
    "flipped byte": (lambda s: _flip(s / "loss_train" / "c" / "0" / "0"), [("checksum", "loss_train chunk 0.0")]),
    "flipped byte in directions/": (lambda s: _flip(s / "directions" / "loss_val" / "c" / "0" / "0" / "0"),
                                    [("checksum", "directions/loss_val chunk 0.0.0")]),
    "truncated chunk": (lambda s: _truncate(s / "sample_loss_train" / "c" / "1" / "0" / "0"),
                        [("checksum", "sample_loss_train chunk 1.0.0")]),
    "deleted loss chunk": (lambda s: (s / "loss_train" / "c" / "0" / "0").unlink(),
                           [("loss", "loss_train line 0")]),
    "deleted per-sample chunk": (lambda s: (s / "sample_loss_val" / "c" / "2" / "0" / "0").unlink(),
                                 [("missing", "sample_loss_val line 2 sample 0")]),
    "deleted step chunk": (lambda s: (s / "step" / "c" / "0").unlink(), [("missing", "step line 0")]),
    "deleted sample ids": (lambda s: (s / "sample_ids_val" / "c" / "0").unlink(),
                           [("sample_ids", "sample_ids_val")]),
    "deleted array": (lambda s: shutil.rmtree(s / "acc_val"),
                      [("format", "acc_val"), ("consolidated", "acc_val")]),
    "wrong format version": (lambda s: _root_attrs(s, losslines_format=7), [("format", "losslines_format")]),
    "edited status": (lambda s: _root_attrs(s, status="done"), [("attributes", "status")]),
    "edited committed_lines": (lambda s: _root_attrs(s, committed_lines=-3), [("attributes", "committed_lines")]),
    "config not JSON": (lambda s: _root_attrs(s, config="{'seed': 3"), [("attributes", "config")]),
    "shape mismatch": (lambda s: _resize(s, "loss_val", 2),
                       [("shape", "loss_val"), ("consolidated", "loss_val")]),
    "committed beyond the arrays": (lambda s: _root_attrs(s, committed_lines=50), None),  # every array: see below
    "edited value (valid checksum)": (lambda s: _rewrite(s, "update_step", 123.0), [("update_step", "line 0")]),
    "stale consolidated metadata": (_consolidated_shape, [("consolidated", "lr")]),
}


def test_a_clean_store_has_no_findings(clean, capsys):
    assert verify_store(clean) == []
    assert main(["verify", str(clean)]) == 0
    assert capsys.readouterr().out.startswith("valid:")


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_planted_corruption_is_reported_precisely(kind, clean, tmp_path, capsys):
    store = tmp_path / "s.zarr"
    shutil.copytree(clean, store)
    damage, expected = CORRUPTIONS[kind]
    damage(store)
    found = verify_store(store)
    where = sorted((f.check, f.where) for f in found)
    if expected is None:  # committed beyond the allocation: every per-line array of the root
        assert where and all(check == "shape" for check, _ in where), where
        assert ("shape", "loss_train") in where and ("shape", "step") in where
    else:
        assert where == sorted(expected), found
    assert main(["verify", str(store)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == len(found) + 1 and out[-1].startswith("invalid:")  # one line per finding, then the verdict
    for line, finding in zip(out, found):
        assert line == str(finding) and finding.where in line


def test_at_least_ten_kinds_are_planted():
    assert len(CORRUPTIONS) >= 10


def test_reading_a_corrupt_chunk_fails_loudly_not_silently(clean, tmp_path):
    from losslines.store.reader import open_store

    store = tmp_path / "s.zarr"
    shutil.copytree(clean, store)
    _flip(store / "slope0_train" / "c" / "0")
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        open_store(store)["slope0_train"].read()
    np.testing.assert_array_equal(open_store(store)["lr"].read(), open_store(clean)["lr"].read())

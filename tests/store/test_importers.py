"""import-pickles: the original line_data_{step}.pickle files, CUDA tensors included, into a v1 store."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.serialization

from losslines.store import open_store
from losslines.store.importers import common_grid, import_pickles, load_line_pickle

GRID = np.arange(-0.5, 0.5, 0.006)  # like the original: 0 is not a grid point


def _cuda_pickle(obj, monkeypatch) -> bytes:
    """Pickle ``obj`` so that its torch storages claim to live on ``cuda:0``.

    torch pickles a tensor's storage through ``torch.save``, which records
    ``location_tag(storage)``; on this machine that is "cpu", so it is patched to say what a
    pickle written on the original GPU machines says.
    """
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        return pickle.dumps(obj)


def _write(folder, step, rng, monkeypatch, *, grid=GRID, tensors=False, n=20, nv=6, b=8):
    a = rng.uniform(0.5, 2.0, n)
    train = a[:, None] * (grid[None] - 0.1) ** 2 + rng.uniform(1, 2, n)[:, None]  # [N, K]
    val = rng.uniform(1, 2, (nv, grid.size))
    batch = 2.0 * grid[None] ** 2 - grid[None] + rng.uniform(1, 2, b)[:, None]
    norm = torch.tensor(1.25 + step, dtype=torch.float64)  # a CUDA tensor in the original
    if tensors:
        train, val, batch = (torch.from_numpy(x) for x in (train, val, batch))
    obj = (train, val, grid, batch, 0.1 * (1.25 + step), norm, step % 2 == 0, step)
    (folder / f"line_data_{step}.pickle").write_bytes(_cuda_pickle(obj, monkeypatch))
    return obj


def test_pickles_claim_cuda_and_plain_pickle_cannot_load_them(tmp_path, monkeypatch):
    _write(tmp_path, 3, np.random.default_rng(0), monkeypatch, tensors=True)
    raw = (tmp_path / "line_data_3.pickle").read_bytes()
    assert b"cuda:0" in raw
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            pickle.loads(raw)
    obj = load_line_pickle(tmp_path / "line_data_3.pickle")
    assert obj[5].device.type == "cpu" and float(obj[5]) == 4.25
    assert obj[0].shape == (20, GRID.size)


def test_import_round_trip(tmp_path, monkeypatch):
    src = tmp_path / "pickles"
    src.mkdir()
    rng = np.random.default_rng(1)
    written = {s: _write(src, s, rng, monkeypatch, tensors=bool(s % 2)) for s in (0, 5, 10, 15)}
    out = import_pickles(src, tmp_path / "store.zarr", lr=0.1)
    st = open_store(out)
    assert st.committed_lines == 4 and st.status == "complete"
    np.testing.assert_array_equal(st.position, GRID)
    np.testing.assert_array_equal(st["step"][:], [0, 5, 10, 15])
    for line, step in enumerate((0, 5, 10, 15)):
        train, val, _, batch, upd, norm, _, _ = written[step]
        train, val, batch = (np.asarray(x) for x in (train, val, batch))
        np.testing.assert_allclose(st["sample_loss_train"][line], train.T.astype(np.float32))
        np.testing.assert_allclose(st["loss_train"][line], train.mean(0), rtol=1e-6)
        np.testing.assert_allclose(st["loss_val"][line], val.mean(0), rtol=1e-6)
        np.testing.assert_allclose(st["loss_batch"][line], batch.mean(0), rtol=1e-6)
        assert st["update_step"][line] == pytest.approx(upd, rel=1e-6)
        assert st["direction_norm"][line] == pytest.approx(float(norm), rel=1e-6)
    assert np.all(st["lr"][:] == np.float32(0.1))
    assert st.attrs["import"]["extrapolated_steps"] == [0, 10]


def test_import_then_analyze(tmp_path, monkeypatch):
    from losslines.analysis.analyze import analyze_store

    src = tmp_path / "p"
    src.mkdir()
    rng = np.random.default_rng(2)
    for s in range(6):
        _write(src, s, rng, monkeypatch)
    out = import_pickles(src, tmp_path / "s.zarr")  # lr unknown
    rep = analyze_store(out, tmp_path / "report", figures=False)
    assert rep.summary["analysed_lines"] == 6
    assert any("learning rate is unknown" in x for x in rep.summary["skipped"])
    np.testing.assert_allclose(rep.result.per_line["s_opt"], 0.1, atol=1e-6)  # every sample's vertex is 0.1


def test_enlarged_positions_share_a_lattice_and_others_fail(tmp_path, monkeypatch):
    grid, where = common_grid([GRID, np.concatenate([[GRID[0] - 0.006], GRID, [GRID[-1] + 0.006]])])
    assert grid.size == GRID.size + 2 and where[0][0] == 1
    with pytest.raises(ValueError, match="lattice"):
        common_grid([GRID, GRID + 0.001])
    src = tmp_path / "p"
    src.mkdir()
    rng = np.random.default_rng(3)
    _write(src, 0, rng, monkeypatch)
    _write(src, 1, rng, monkeypatch, grid=np.concatenate([GRID, [GRID[-1] + 0.006]]))
    st = open_store(import_pickles(src, tmp_path / "s.zarr"))
    assert st.position.size == GRID.size + 1
    assert np.isnan(st["loss_train"][0, -1]) and np.isfinite(st["loss_train"][1, -1])


def test_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no line_data"):
        import_pickles(tmp_path, tmp_path / "s.zarr")
    (tmp_path / "line_data_1.pickle").write_bytes(pickle.dumps((1, 2, 3)))
    with pytest.raises(ValueError, match="8-tuple"):
        import_pickles(tmp_path, tmp_path / "s.zarr")
    (tmp_path / "line_data_1.pickle").write_bytes(pickle.dumps(tmp_path))  # a class outside the format
    with pytest.raises(ValueError, match="refusing to unpickle"):
        import_pickles(tmp_path, tmp_path / "s.zarr")


def test_cli_import_pickles_and_its_errors(tmp_path, monkeypatch, capsys):
    from losslines.cli import main

    src = tmp_path / "pickles"
    src.mkdir()
    rng = np.random.default_rng(4)
    for step in (0, 1, 2):
        _write(src, step, rng, monkeypatch)
    out = tmp_path / "imported.zarr"
    assert main(["import-pickles", str(src), "--out", str(out), "--lr", "0.1"]) == 0
    store = open_store(out)
    assert store.committed_lines == 3 and store.status == "complete"
    np.testing.assert_allclose(store["lr"][...], 0.1)
    capsys.readouterr()
    # Importing onto an existing store, or from a folder without pickles: exit 2, one line.
    assert main(["import-pickles", str(src), "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert open_store(out).committed_lines == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["import-pickles", str(empty), "--out", str(tmp_path / "x.zarr")]) == 2
    assert "pickle" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing.zarr")]) == 2
    assert "missing.zarr" in capsys.readouterr().err


def test_float32_and_unsorted_positions(tmp_path, monkeypatch):
    """Regressions: float32 positions failed the lattice check; unsorted positions were stored
    unsorted (a store the analysis refuses)."""
    f32 = [np.arange(-0.5, 0.5, 0.006, dtype=np.float32), np.arange(-0.53, 0.53, 0.006, dtype=np.float32)]
    grid, where = common_grid(f32)
    assert np.all(np.diff(grid) > 0) and grid.size == np.unique(np.concatenate(where)).size
    np.testing.assert_allclose(grid[where[0]], f32[0], atol=1e-6)
    shuffled = np.random.default_rng(0).permutation(GRID)
    grid, where = common_grid([shuffled, shuffled])
    np.testing.assert_array_equal(grid, np.sort(shuffled))
    np.testing.assert_array_equal(grid[where[0]], shuffled)
    with pytest.raises(ValueError, match="NaN"):
        common_grid([np.array([0.0, np.nan, 0.1])])
    with pytest.raises(ValueError, match="repeat"):
        common_grid([np.array([0.0, 0.1, 0.1])])


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_loads(tmp_path, protocol):
    """Regression: protocol 2 and 5 pickles of numpy arrays were refused by the allow-list."""
    rng = np.random.default_rng(protocol)
    obj = (rng.random((5, GRID.size)), rng.random((3, GRID.size)), GRID, rng.random((4, GRID.size)),
           0.1, 1.5, False, 7)
    path = tmp_path / "line_data_7.pickle"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    loaded = load_line_pickle(path)
    np.testing.assert_array_equal(loaded[0], obj[0])


def test_two_files_for_one_step_are_refused(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    _write(tmp_path, 5, rng, monkeypatch)
    (tmp_path / "line_data_05.pickle").write_bytes((tmp_path / "line_data_5.pickle").read_bytes())
    with pytest.raises(ValueError, match=r"several files for step\(s\) \[5\]"):
        import_pickles(tmp_path, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()

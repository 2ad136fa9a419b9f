"""import-pickles: the original sampler's line_data_{step}.pickle files (uneven grids, update points
sorted in, enlargement rings, CUDA tensors) into a format 2 store."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from original_pickles import EIGHT_STEPS, EIGHT_STEPS_RINGS, LR, LineSpec, ring_locations, write_line, write_run

from losslines.store import open_store
from losslines.store.importers import common_grid, import_pickles, load_line_pickle, split_update_point
from losslines.store.verify import verify_store

RING0 = np.sort(ring_locations(0))  # the 168 lattice points of ring 0, as the original computes them


def _mean32(values: np.ndarray) -> np.float32:
    """The float64 mean of per-sample values (exactly rounded sum), rounded to float32."""
    return np.float32(math.fsum(values) / values.size)


def test_pickles_claim_cuda_and_plain_pickle_cannot_load_them(tmp_path, monkeypatch):
    line = write_line(tmp_path, LineSpec(3, 2.0, 0.1), np.random.default_rng(0), monkeypatch, tensors=True)
    raw = line.path.read_bytes()
    assert b"cuda:0" in raw
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            pickle.loads(raw)
    obj = load_line_pickle(line.path)
    assert obj[5].device.type == "cpu" and obj[5].dtype == torch.float32 and float(obj[5]) == 2.0
    assert obj[0].shape == (40, 169) and obj[4] == line.update_step == (LR * torch.tensor(2.0)).item()


@pytest.mark.parametrize("momentum", [False, True], ids=["sgd", "momentum"])
def test_original_uneven_grids_import_losing_nothing(tmp_path, monkeypatch, capsys, momentum):
    """Regression (issue 12): eight files of the original sampler (two half-lattices, the update
    point sorted into each line's grid, enlargement rings) made import-pickles exit 2 with
    "positions of file #0 are not on the lattice"."""
    from losslines.analysis.analyze import analyze_store
    from losslines.cli import main

    written = write_run(tmp_path / "pickles", monkeypatch, momentum=momentum)
    assert [w.rings for w in written] == list(EIGHT_STEPS_RINGS)  # the fixture covers rings 0, 1 (either side), 2
    assert max(w.update_step for w in written) > 0.5  # an update point beyond the interval (0.647)
    out = tmp_path / "imported.zarr"
    assert main(["import-pickles", str(tmp_path / "pickles"), "--out", str(out), "--lr", str(LR)]) == 0
    capsys.readouterr()
    st = open_store(out)
    assert st.committed_lines == 8 and st.status == "complete"

    # The grid: ring 0's two half-lattices and rings 1 and 2, exactly as computed; no update point.
    expected = np.unique(np.concatenate([ring_locations(r) for r in range(3)]))
    np.testing.assert_array_equal(st.position, expected)
    assert st.position.size == 504 and st.position.dtype == np.float64 and np.all(np.diff(st.position) > 0)
    zero = int(np.flatnonzero(st.position == 0.0)[0])
    np.testing.assert_array_equal(st.position[zero - 1:zero + 2], [RING0[83], 0.0, RING0[85]])  # -0.002, 0, 0.006
    assert not np.isin([0.647, 0.005], st.position).any()

    loss = {s: st[f"loss_{s}"][...] for s in ("train", "val", "batch")}
    at_update = {s: st[f"loss_at_update_{s}"][...] for s in ("train", "val", "batch")}
    for i, w in enumerate(written):
        measured = (st.position >= -0.5 * (w.rings + 1)) & (st.position < 0.5 * (w.rings + 1))
        np.testing.assert_array_equal(np.isfinite(loss["train"][i]), measured)  # NaN exactly where not measured
        others = np.flatnonzero(w.positions != w.update_step)
        cols = np.searchsorted(st.position, w.positions[others])
        np.testing.assert_array_equal(st.position[cols], w.positions[others])
        for split in ("train", "val", "batch"):
            values = getattr(w, split)
            np.testing.assert_array_equal(loss[split][i, cols], [_mean32(values[:, c]) for c in others])
            np.testing.assert_array_equal(st[f"sample_loss_{split}"][i][cols], values[:, others].T.astype(np.float32))
            assert np.isnan(st[f"sample_loss_{split}"][i][~measured]).all()
            if w.step == 2:  # the update step 0.5 is also ring 1's first point: two columns, one each
                twin = [c for c in np.flatnonzero(w.positions == 0.5)]
                grid_value = loss[split][i, np.flatnonzero(st.position == 0.5)[0]]
                assert sorted([grid_value, at_update[split][i]]) == sorted(_mean32(values[:, c]) for c in twin)
            else:
                assert at_update[split][i] == _mean32(values[:, w.update_column])
    np.testing.assert_array_equal(st["update_step"][...], np.float32([w.update_step for w in written]))
    np.testing.assert_array_equal(st["direction_norm"][...], np.float32([w.direction_norm for w in written]))
    np.testing.assert_array_equal(st["step"][...], [w.step for w in written])
    np.testing.assert_array_equal(st["lr"][...], np.float32(LR))
    assert np.isnan(st["slope0_train"][...]).all() and (st["batch_ids"][...] == -1).all()
    info = st.attrs["import"]
    assert info["grid_points"] == 504 and info["steps_with_update_point_on_own_grid"] == [2]
    assert info["steps_without_update_point"] == [] and info["extrapolated_steps"] == []

    assert verify_store(out) == []
    report = analyze_store(out, tmp_path / "report", figures=False)
    assert report.summary["analysed_lines"] == 8
    s_opt = report.result.per_line["s_opt"]
    np.testing.assert_allclose(s_opt, [w.minimum for w in EIGHT_STEPS], atol=1e-3)  # on rings 1 and 2 too
    taken = report.result.outputs["rules"].value.outcomes["taken"]
    l0 = loss["train"][:, zero].astype(np.float64)
    np.testing.assert_array_equal(taken.improvement, l0 - at_update["train"].astype(np.float64))  # 0.647 included

    # the original's own definitions on its own files: 66 window points around 0 on its two
    # half-lattices, s_opt on the grid, the default numbers alongside
    from losslines.analysis.results import AnalysisOptions

    compat = analyze_store(out, tmp_path / "compat", figures=False, options=AnalysisOptions(compat="original"))
    assert compat.summary["distances"]["window_points"] == 66
    assert np.isin(compat.result.per_line["s_opt"], st.position).all()
    assert compat.summary["compat"]["pool"] == {"n_train": st.sample_ids("train").size, "n_batch": st["batch_ids"].shape[1]}
    numbers = {n["quantity"]: n for n in compat.summary["compat"]["numbers"]}
    assert numbers["median s_opt"]["default"] == report.summary["minimum"]["s_opt"]["median"]


def test_split_update_point():
    pos = np.array([-0.5, 0.0, 0.2, 0.3])
    np.testing.assert_array_equal(split_update_point(pos, 0.2)[0], [0, 1, 3])
    assert split_update_point(pos, 0.2)[1] == 2
    assert split_update_point(pos, 0.25)[1] is None and split_update_point(pos, 0.25)[0].size == 4
    twice = np.array([0.0, 0.5, 0.5, 0.506])
    cols, update = split_update_point(twice, 0.5)
    assert update == 2 and cols.tolist() == [0, 1, 3]  # the first stays on the grid
    f32 = np.array([0.0, 0.006, 0.1], dtype=np.float32)  # compared in the positions' own precision
    assert split_update_point(f32, 0.1)[1] == 2


def test_common_grid_merges_equal_positions_exactly_and_keeps_others():
    ring1 = np.sort(ring_locations(1))
    grid, where = common_grid([RING0, np.concatenate([ring1[::-1], RING0])])
    assert grid.size == 336 and np.all(np.diff(grid) > 0)
    np.testing.assert_array_equal(grid[where[0]], RING0)
    np.testing.assert_array_equal(grid[where[1]][:168], ring1[::-1])
    grid, where = common_grid([RING0, RING0 + 0.001])  # another lattice: kept, each line NaN on the other's
    assert grid.size == 336 and np.array_equal(grid[where[1]], RING0 + 0.001)
    near = r"line_data_[01].pickle has position .* and line_data_[01].pickle has .* computed two ways"
    with pytest.raises(ValueError, match=near):
        common_grid([RING0, RING0.astype(np.float32)], ["line_data_0.pickle", "line_data_1.pickle"])
    close = np.array([0.0, 0.1, 0.1 + 1e-12])  # near-equal points that one file measured both: kept
    assert common_grid([close, close])[0].size == 3
    with pytest.raises(ValueError, match=r"positions of line_data_4.pickle contain NaN or inf: \[nan\]"):
        common_grid([np.array([0.0, np.nan, 0.1])], ["line_data_4.pickle"])
    with pytest.raises(ValueError, match=r"positions of file #0 repeat the step size\(s\) \[0.1\]"):
        common_grid([np.array([0.0, 0.1, 0.1])])
    shuffled = np.random.default_rng(0).permutation(RING0)
    grid, where = common_grid([shuffled, shuffled])
    np.testing.assert_array_equal(grid, RING0)
    np.testing.assert_array_equal(grid[where[0]], shuffled)


def test_file_variants_tensors_transposed_flag_and_float32_positions(tmp_path, monkeypatch):
    """Per-sample torch tensors, ``[K, n]`` arrays, a set extrapolation flag; and a folder whose
    positions were all re-saved as float32 (regression: they failed the old lattice check)."""
    rng = np.random.default_rng(5)
    src = tmp_path / "p"
    src.mkdir()
    specs = EIGHT_STEPS[:3]
    written = [write_line(src, specs[0], rng, monkeypatch, tensors=True),
               write_line(src, specs[1], rng, monkeypatch, transposed=True, extrapolated=True),
               write_line(src, specs[2], rng, monkeypatch, tensors=True, transposed=True)]
    st = open_store(import_pickles(src, tmp_path / "s.zarr"))
    assert st.attrs["import"]["per_sample_layout_in_files"] == "[K, n]"
    assert st.attrs["import"]["extrapolated_steps"] == [1]
    assert st.position.size == 336  # ring 0 and ring 1 (step 2)
    for i, w in enumerate(written):
        if w.step != 2:
            assert st["loss_at_update_train"][i] == _mean32(w.train[:, w.update_column])
        cols = np.searchsorted(st.position, w.positions[w.positions != w.update_step])
        np.testing.assert_array_equal(st["sample_loss_val"][i][cols], w.val[:, w.positions != w.update_step].T
                                      .astype(np.float32))

    src32 = tmp_path / "p32"
    written = write_run(src32, monkeypatch, specs=EIGHT_STEPS[3:6], positions_dtype=np.float32)
    st = open_store(import_pickles(src32, tmp_path / "s32.zarr"))
    expected = np.unique(np.concatenate([ring_locations(r) for r in range(3)]).astype(np.float32)).astype(np.float64)
    np.testing.assert_array_equal(st.position, expected)  # update points found in float32, not on the grid
    assert np.isfinite(st["loss_at_update_train"][...]).all()
    assert st.attrs["import"]["steps_without_update_point"] == []


def test_files_without_their_update_point_keep_every_position(tmp_path):
    """Files not written by the sampler (no update point among the positions) import whole."""
    grid = np.linspace(-0.1, 0.1, 5)
    rng = np.random.default_rng(8)
    for step in (0, 1):
        obj = (rng.random((3, 5)), rng.random((2, 5)), grid, rng.random((2, 5)), 0.03, 0.3, False, step)
        (tmp_path / f"line_data_{step}.pickle").write_bytes(pickle.dumps(obj))
    st = open_store(import_pickles(tmp_path, tmp_path / "s.zarr", lr=0.1))
    np.testing.assert_array_equal(st.position, grid)
    assert np.isnan(st["loss_at_update_train"][...]).all() and np.isfinite(st["loss_train"][...]).all()
    assert st.attrs["import"]["steps_without_update_point"] == [0, 1]
    assert verify_store(tmp_path / "s.zarr") == []


def test_near_equal_positions_of_two_files_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """Files of one run re-saved with float32 positions next to float64 ones: each step size twice,
    1e-8 apart; refused naming the files and the positions rather than splitting every line."""
    from losslines.cli import main

    rng = np.random.default_rng(6)
    write_line(tmp_path, EIGHT_STEPS[0], rng, monkeypatch)
    write_line(tmp_path, EIGHT_STEPS[5], rng, monkeypatch, positions_dtype=np.float32)
    out = tmp_path / "s.zarr"
    assert main(["import-pickles", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line_data_0.pickle" in err[0] and "line_data_5.pickle" in err[0]
    assert "computed two ways" in err[0] and not out.exists()


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
    write_run(src, monkeypatch, specs=EIGHT_STEPS[5:])
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


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_loads(tmp_path, protocol):
    """Regression: protocol 2 and 5 pickles of numpy arrays were refused by the allow-list."""
    rng = np.random.default_rng(protocol)
    grid = np.sort(np.append(RING0, 0.1))
    obj = (rng.random((5, grid.size)), rng.random((3, grid.size)), grid, rng.random((4, grid.size)),
           0.1, 1.5, False, 7)
    path = tmp_path / "line_data_7.pickle"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    loaded = load_line_pickle(path)
    np.testing.assert_array_equal(loaded[0], obj[0])
    np.testing.assert_array_equal(loaded[2], grid)


def test_two_files_for_one_step_are_refused(tmp_path, monkeypatch):
    line = write_line(tmp_path, LineSpec(5, 1.0, 0.1), np.random.default_rng(9), monkeypatch)
    (tmp_path / "line_data_05.pickle").write_bytes(line.path.read_bytes())
    with pytest.raises(ValueError, match=r"several files for step\(s\) \[5\]"):
        import_pickles(tmp_path, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()

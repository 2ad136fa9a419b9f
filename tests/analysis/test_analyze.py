"""analyze_store end to end on synthetic stores with known answers."""

import json

import numpy as np
import pytest

from losslines.analysis.analyze import analyze_store
from losslines.analysis.results import AnalysisOptions
from losslines.store import open_store

from analysis_stores import GRID, write_parabola_store


def test_report_on_a_full_store_matches_the_known_answers(parabola_store, tmp_path):
    truth = parabola_store
    rep = analyze_store(truth["path"], tmp_path / "out", options=AnalysisOptions(sgd_lrs=(0.1, 0.05), n_draws=4))
    res = rep.result
    np.testing.assert_allclose(res.per_line["s_opt"], truth["s_opt"], atol=2e-5)  # f32 rounding; grid: 3e-3
    np.testing.assert_allclose(res.per_line["mae2"], 0, atol=2e-6)
    np.testing.assert_allclose(res.coef[2], np.stack([truth["a"], truth["b"], truth["c"]], 1), rtol=1e-4, atol=1e-5)
    # replayed SGD with the store's λ reproduces the stored update step
    np.testing.assert_allclose(res.rules["sgd(lr=0.1)"].step, truth["update_step"], rtol=1e-6)
    np.testing.assert_allclose(res.rules["sgd(lr=0.1)"].improvement, res.rules["taken"].improvement, atol=1e-5)
    # full-batch PAL on exact parabolas lands on the optimum
    np.testing.assert_allclose(res.rules["fbpal(mu=0.1)"].step, truth["s_opt"], atol=1e-4)
    assert res.slope_sources == {"train": {"exact": 12, "grid": 0}, "batch": {"exact": 12, "grid": 0}}
    # batch-size study: slopes equal the closed form mean of b_i over the drawn samples
    st = res.batch_study
    np.testing.assert_allclose(st.batch_slope, truth["b_batch"].mean(1), atol=1e-4)
    assert st.slopes.shape == (12, len(st.batch_sizes), 4)
    for name in ("report.md", "metrics.json", "per_line.npz", "metrics.png", "metrics.pdf", "shape.png",
                 "distances.png", "batch_size.png"):
        assert (rep.out_dir / name).is_file(), name
    summary = json.loads(rep.metrics.read_text())
    assert summary["analysed_lines"] == 12 and summary["shape"]["fraction_mae2_below_1e-3"] == 1.0
    text = rep.report.read_text()
    assert "![line-to-line distances (Fig. 3)](distances.png)" in text
    assert "all-directions statistics (Fig. 8)" in text  # skipped, and said so


def test_batch_size_closed_form_via_the_same_seeded_draws(parabola_store, tmp_path):
    from losslines.analysis.batchsize import draw_sample_batches, super_batch_pool

    truth = parabola_store
    res = analyze_store(truth["path"], tmp_path / "o", options=AnalysisOptions(n_draws=3, seed=7), figures=False).result
    st = res.batch_study
    ids = np.arange(1000, 1064)
    for line in range(12):
        pool = super_batch_pool(ids, truth["batch_ids"][line])
        draws = draw_sample_batches(16, pool, tuple(st.batch_sizes), 3, np.random.default_rng([7, line]))
        for j, d in enumerate(draws):
            closed = (truth["b_batch"][line][d.batch_slots].sum(1) + truth["b_train"][line][d.train_index].sum(1)) / d.size
            np.testing.assert_allclose(st.slopes[line, j], closed, atol=1e-4)
            assert not np.isin(ids[d.train_index], truth["batch_ids"][line]).any()  # batch kept separate


def test_missing_optional_arrays_are_reported_not_fatal(tmp_path):
    truth = write_parabola_store(tmp_path / "bare.zarr", sample_losses=(), slopes=False, n_val=0)
    rep = analyze_store(truth["path"], tmp_path / "out")
    skipped = " ".join(rep.summary["skipped"])
    assert "batch-size study" in skipped and "sample_loss_train" in skipped
    assert rep.result.batch_study is None and rep.result.views[0].bands is None
    assert rep.result.slope_sources["train"] == {"exact": 0, "grid": 12}
    # grid slope estimate is exact on parabolas, so PAL still finds the vertex
    np.testing.assert_allclose(rep.result.rules["fbpal(mu=0.1)"].step, truth["s_opt"], atol=1e-4)
    assert "Skipped" in rep.report.read_text() and (rep.out_dir / "line_000000.png").is_file()


def test_store_being_written_uses_committed_lines_only(tmp_path):
    truth = write_parabola_store(tmp_path / "live.zarr", n_lines=10, close=False, line_chunk=4)
    writer = truth["writer"]
    writer.append({"step": 999, "loss_train": np.full(GRID.size, 5.0)})  # queued, not committed
    committed = open_store(truth["path"]).committed_lines
    rep = analyze_store(truth["path"], tmp_path / "out", figures=False)
    assert rep.summary["status"] == "running"
    assert rep.summary["analysed_lines"] == committed == 10
    writer.close()


def test_line_selection_window_and_errors(parabola_store, tmp_path):
    rep = analyze_store(parabola_store["path"], tmp_path / "o", lines="2:10:3", window=0.1, figures=False)
    assert rep.result.lines.tolist() == [2, 5, 8]
    np.testing.assert_allclose(rep.result.per_line["s_opt"], parabola_store["s_opt"][[2, 5, 8]], atol=2e-5)
    with pytest.raises(ValueError, match="selects no line"):
        analyze_store(parabola_store["path"], tmp_path / "o", lines="20:30", figures=False)
    with pytest.raises(ValueError, match="START:STOP"):
        analyze_store(parabola_store["path"], tmp_path / "o", lines="a:b", figures=False)
    with pytest.raises(FileNotFoundError):
        analyze_store(tmp_path / "nothing.zarr", tmp_path / "o")
    with pytest.raises(ValueError, match="plot line"):
        analyze_store(parabola_store["path"], tmp_path / "o", options=AnalysisOptions(plot_lines=(50,)), figures=False)


def test_directions_group_and_saved_distance_matrix(tmp_path):
    import zarr

    truth = write_parabola_store(tmp_path / "dir.zarr", directions=5, n_lines=6)
    rep = analyze_store(truth["path"], tmp_path / "out",
                        options=AnalysisOptions(save_distance_matrix=True, distance_block=4, formats=("png",)))
    ds = rep.result.directions
    assert ds.s_opt.shape == (2, 5) and np.allclose(ds.mae2, 0, atol=1e-5)
    assert (rep.out_dir / "directions.png").is_file()
    m = zarr.open_array(str(rep.out_dir / "distances.zarr"), mode="r")[:]
    assert m.shape == (6, 6) and np.allclose(m, m.T) and np.all(np.diag(m) == 0)
    np.testing.assert_allclose(m[:, :].mean(1) * 6 / 5, rep.result.distances.row_mean, rtol=1e-5)


@pytest.mark.parametrize("n_lines,panels", [(12, ["all 12 lines"]),
                                            (56, ["all 56 lines", "first 50 lines", "the rest"])])
def test_distance_figure_draws_only_the_views_that_exist(tmp_path, n_lines, panels):
    """Regression: with <= 50 lines the figure repeated "all" as "first 50" and left an empty panel."""
    from losslines.analysis.figures_metrics import distance_figure

    write_parabola_store(tmp_path / "s.zarr", n_lines=n_lines, sample_losses=(), line_chunk=8)
    rep = analyze_store(tmp_path / "s.zarr", tmp_path / "o", figures=False)
    fig = distance_figure(rep.result)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == panels + ["consecutive-line distance"]


def test_a_diverged_line_is_left_out_of_the_distances_only(tmp_path):
    """Regression: one all-NaN line emptied the common window columns and the analysis raised."""
    import zarr

    truth = write_parabola_store(tmp_path / "s.zarr", n_lines=6)
    arr = zarr.open_array(str(tmp_path / "s.zarr" / "loss_train"), mode="r+")
    row = arr[3]
    row[:] = np.nan
    arr[3] = row
    rep = analyze_store(tmp_path / "s.zarr", tmp_path / "o", figures=False)
    assert rep.summary["distances"]["lines"] == 5
    assert any("left out" in note for note in rep.summary["notes"])
    s_opt = rep.result.per_line["s_opt"]
    assert np.isnan(s_opt[3])
    np.testing.assert_allclose(np.delete(s_opt, 3), np.delete(truth["s_opt"], 3), atol=1e-5)


def test_default_batch_sizes_fit_the_samples_outside_the_batch(tmp_path):
    """Regression: with few measured samples the default super-batch sizes could not be drawn
    (the pool excludes the line's own batch ids) and the analysis raised."""
    write_parabola_store(tmp_path / "s.zarr", n_train=20, batch=16)
    rep = analyze_store(tmp_path / "s.zarr", tmp_path / "o", figures=False)
    assert max(rep.result.batch_study.batch_sizes) <= 20
    assert any("batch sizes [32" in s for s in rep.summary["skipped"])

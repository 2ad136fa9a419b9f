"""A diverging run (train.on_nonfinite): NaN and inf stored as measured, flagged, and followed.

The tiny run diverges with the largest learning rate the config accepts (``train.lr`` < 1000:
999), the ``mse`` loss and no BatchNorm (with BatchNorm the tiny CNN's losses grow to ~1e18 but
stay finite): its training loss is inf at step 2 and its parameters NaN after it. Every step is
measured, so the non-finite step has a line.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

from losslines.analysis import compute, plot_line
from losslines.cli import EXIT_NONFINITE, main
from losslines.records import nonfinite_line
from losslines.runner.checkpoint import checkpoint_dir, load_checkpoint
from losslines.runner.config import config_to_dict
from losslines.runner.driver import run
from losslines.runner.measure import measure_recording
from losslines.runner.tensorboard import tensorboard_installed
from losslines.store import StoreSink, open_store
from losslines.store.compare import VOLATILE_ATTRS, diff_stores
from losslines.store.verify import verify_store


DIVERGING = ("train.lr=999", "model.options.batch_norm=false", "measure.loss=mse", "measure.every=1", "threads=1")
FIRST_BAD = 2  # the step whose training loss overflows
SPLITS = ("train", "val", "batch")
# store arrays whose lines are compared with the records the sampler emitted
PER_LINE = ("direction_norm", "update_step", "lr")
PER_SPLIT = ("loss", "acc", "loss_at_update", "slope0", "sample_loss", "sample_slope0")


def _run_with_spy(cfg, **kwargs):
    """``run(cfg)`` and every record the sampler emitted into the store's sink, in order."""
    emitted = []
    original = StoreSink.append

    def spy(self, record):
        emitted.append(record)
        return original(self, record)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(StoreSink, "append", spy)
        result = run(cfg, progress=False, **kwargs)
    return result, emitted


def _emitted(record, name: str, split: str | None = None):
    if split is None:
        return getattr(record, name)
    line = record.splits[split]
    return {"loss": line.loss, "acc": line.accuracy, "loss_at_update": line.loss_at_update, "slope0": line.slope0,
            "sample_loss": line.sample_loss, "sample_slope0": line.sample_slope0}[name]


def assert_stored_as_emitted(store, records) -> None:
    """Every stored value is the emitted one in the store's dtype: NaN and ±inf too, none replaced
    (a finite float64 beyond float32's range is kept as inf by the float32 array)."""
    assert [int(s) for s in store["step"][:store.committed_lines]] == [r.step for r in records]
    for i, record in enumerate(records):
        for name in PER_LINE:
            _same(store[name][i], _emitted(record, name), name)
        for split in SPLITS:
            for name in PER_SPLIT:
                if store.has(f"{name}_{split}"):  # no acc_batch in the format
                    _same(store[f"{name}_{split}"][i], _emitted(record, name, split), f"{name}_{split} line {i}")


def _same(stored, emitted, what: str) -> None:
    with np.errstate(over="ignore"):  # the cast the store makes
        expected = np.asarray(emitted, dtype=np.float64).astype(stored.dtype)
    np.testing.assert_array_equal(stored, expected, err_msg=what)  # NaN == NaN, inf == inf, bit for bit otherwise


def flags_from_data(store) -> np.ndarray:
    """records.nonfinite_line of every committed line, from the stored arrays alone."""
    n, zero = store.committed_lines, int(np.flatnonzero(store.position == 0.0)[0])
    return nonfinite_line(store["direction_norm"][:n], store["update_step"][:n],
                          {s: store[f"loss_{s}"][:n, zero] for s in SPLITS})


@pytest.fixture(scope="module")
def continued(tmp_path_factory, tiny_config):
    """The diverging run with train.on_nonfinite = "continue": its result, store and emitted records."""
    cfg = tiny_config(tmp_path_factory.mktemp("continue"), *DIVERGING, "train.on_nonfinite=continue")
    result, emitted = _run_with_spy(cfg)
    return result, cfg.store_path, emitted


def test_a_diverging_run_stops_at_the_step_by_default_with_its_line_stored_as_measured(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path, *DIVERGING)
    assert cfg.train.on_nonfinite == "stop"
    result, emitted = _run_with_spy(cfg)
    assert result.status == "nonfinite" and result.steps == FIRST_BAD + 1 and result.lines == FIRST_BAD + 1
    assert result.reason == f"the training loss is inf at step {FIRST_BAD}"
    store = open_store(cfg.store_path)
    assert store.status == "failed"
    reason = store.attrs["status_reason"]
    assert f"the training loss is inf at step {FIRST_BAD}" in reason and "train.on_nonfinite" in reason
    assert store.attrs["first_nonfinite"] == {"step": FIRST_BAD, "quantity": "the training loss", "value": "inf"}
    assert store.attrs["nonfinite_steps"] == [FIRST_BAD]
    # the line of the non-finite step is in the store, its values as the sampler emitted them
    assert [r.step for r in emitted] == [0, 1, 2]
    assert_stored_as_emitted(store, emitted)
    zero = int(np.flatnonzero(store.position == 0.0)[0])
    assert np.isinf(store["loss_train"][FIRST_BAD, zero]) and np.isinf(store["update_step"][FIRST_BAD])
    assert np.isfinite(store["loss_train"][:FIRST_BAD, :]).all()
    assert flags_from_data(store).tolist() == [False, False, True]
    # a checkpoint after the step: the run can go on with --set train.on_nonfinite=continue
    assert load_checkpoint(checkpoint_dir(cfg.store_location)).step == FIRST_BAD + 1


def test_continue_takes_every_step_and_flags_exactly_the_non_finite_lines(continued):
    result, path, emitted = continued
    assert result.status == "complete" and result.steps == 12 and result.lines == 12 and result.reason == ""
    store = open_store(path)
    assert store.status == "complete" and store.attrs["status_reason"] is None
    assert_stored_as_emitted(store, emitted)
    flags = flags_from_data(store)
    assert flags.tolist() == [False] * FIRST_BAD + [True] * (12 - FIRST_BAD)
    assert store.attrs["nonfinite_steps"] == [int(s) for s in store["step"][...][flags]]
    assert store.attrs["first_nonfinite"] == {"step": FIRST_BAD, "quantity": "the training loss", "value": "inf"}
    # after the step the parameters are NaN: later lines are NaN at s = 0 and, without a direction, nowhere else
    zero = int(np.flatnonzero(store.position == 0.0)[0])
    later = store["loss_train"][FIRST_BAD + 1:]
    assert np.isnan(later[:, zero]).all() and np.isnan(store["direction_norm"][FIRST_BAD + 1:]).all()


def test_a_stopped_run_resumed_with_continue_is_the_continued_run(tmp_path, continued, tiny_config):
    cfg = tiny_config(tmp_path, *DIVERGING)
    assert run(cfg, progress=False).status == "nonfinite"
    resumed = run(tiny_config(tmp_path, *DIVERGING, "train.on_nonfinite=continue"), resume=True, progress=False)
    assert resumed.status == "complete" and resumed.steps == 12
    ignored = (*VOLATILE_ATTRS, "config.store.path", "config.train.on_nonfinite")
    assert diff_stores(continued[1], cfg.store_path, ignore_attrs=ignored) == []


def test_an_interrupted_continuing_run_resumes_its_non_finite_record(tmp_path, continued, tiny_config):
    cfg = tiny_config(tmp_path, *DIVERGING, "train.on_nonfinite=continue")
    assert run(cfg, progress=False, stop_at_step=6).status == "interrupted"
    assert open_store(cfg.store_path).attrs["nonfinite_steps"] == [2, 3, 4, 5]
    assert run(cfg, resume=True, progress=False).status == "complete"
    assert diff_stores(continued[1], cfg.store_path, ignore_attrs=(*VOLATILE_ATTRS, "config.store.path")) == []


def test_a_recorded_diverging_run_measures_into_the_inline_store(tmp_path, continued, tiny_config):
    cfg = tiny_config(tmp_path, *DIVERGING, "train.on_nonfinite=continue", "measure.mode=record")
    assert run(cfg, progress=False).status == "complete"
    measure_recording(cfg.store_path, tmp_path / "measured.zarr", progress=False)
    measured, inline = open_store(tmp_path / "measured.zarr"), open_store(continued[1])
    assert measured.attrs["nonfinite_steps"] == inline.attrs["nonfinite_steps"] == list(range(FIRST_BAD, 12))
    for name in ("step", *PER_LINE, *(f"{k}_{s}" for k in PER_SPLIT for s in SPLITS if inline.has(f"{k}_{s}"))):
        np.testing.assert_array_equal(measured[name][...], inline[name][...], err_msg=name)
    assert verify_store(tmp_path / "measured.zarr") == []


def test_run_command_exits_3_with_a_line_naming_the_step(tmp_path, toml_dumps, capsys, tiny_config):
    cfg = tiny_config(tmp_path, *DIVERGING)
    config = tmp_path / "run.toml"
    config.write_text(toml_dumps(config_to_dict(cfg)))
    assert main(["run", str(config), "-q", "--out", str(tmp_path / "cli.zarr")]) == EXIT_NONFINITE == 3
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"stopped, the training loss is inf at step {FIRST_BAD} (train.on_nonfinite = 'stop')")


def test_verify_accepts_the_flagged_lines_and_still_reports_unflagged_ones(tmp_path, continued):
    assert verify_store(continued[1]) == []
    copy = tmp_path / "unflagged.zarr"
    shutil.copytree(continued[1], copy)
    zarr.open_group(str(copy), mode="r+").attrs["nonfinite_steps"] = "[]"  # format 2 keeps it as JSON text
    findings = {(f.check, f.where) for f in verify_store(copy)}
    assert ("loss", f"loss_train line {FIRST_BAD}") in findings and ("update_step", f"line {FIRST_BAD}") in findings


def test_analysis_marks_the_non_finite_lines_and_computes_on_the_finite_ones(tmp_path, continued, capsys):
    path = continued[1]
    out = tmp_path / "report"
    assert main(["analyze", str(path), "--out", str(out), "--formats", "png"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    bad = list(range(FIRST_BAD, 12))
    assert metrics["nonfinite"] == {"lines": 10, "line_indices": bad, "steps": bad}
    assert "**10 non-finite line(s)** (training steps 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)" in (out / "report.md").read_text()
    assert np.load(out / "per_line.npz")["line_nonfinite"].tolist() == [False] * FIRST_BAD + [True] * 10
    result = compute(path)
    frame = result.to_dataframe()
    assert frame["nonfinite"].tolist() == [False] * FIRST_BAD + [True] * 10
    assert frame["s_opt"].loc[bad].isna().all() and frame["s_opt"].loc[:FIRST_BAD - 1].notna().all()
    # the metrics are those of the finite lines alone: every section of metrics.json, and the counts in it
    finite = compute(path, lines=f"0:{FIRST_BAD}")
    for name in ("s_opt", "mae2", "ratio"):
        np.testing.assert_array_equal(result.per_line[name][:FIRST_BAD], finite.per_line[name], err_msg=name)
    header = {"store", "status", "committed_lines", "analysed_lines", "line_range", "steps", "grid", "nonfinite",
              "options", "skipped", "notes"}
    sections = {k: v for k, v in result.summary().items() if k not in header}
    assert {"minimum", "shape", "rules", "slope_sources", "batch_size"} <= set(sections)
    assert sections == {k: v for k, v in finite.summary().items() if k not in header}
    assert metrics["slope_sources"]["train"] == {"exact": FIRST_BAD, "grid": 0}
    assert metrics["batch_size"]["lines_with_stencil_slopes"] == 0
    ax = plot_line(path, FIRST_BAD)  # a line with nothing finite to draw
    assert ax.get_title() == f"line {FIRST_BAD} (training step {FIRST_BAD}): no finite loss (diverged)"


def test_per_step_directions_float16_and_tensorboard_take_a_diverging_run(tmp_path, tiny_config):
    """The other writers of a run's values: per-step entries, all-directions lines, float16
    per-sample losses (beyond 65504 nats: inf) and the TensorBoard log; the analysis notes what it
    leaves out."""
    extra = ["measure.schedule=list", "measure.at=[0,1,3,6,9]", "train.on_nonfinite=continue", "measure.per_step=true",
             "measure.directions_at=[0,6]", "measure.n_directions=2", "measure.sample_dtype=float16"]
    if tensorboard_installed():
        extra.append(f"store.tensorboard={json.dumps(str(tmp_path / 'tb'))}")
    cfg = tiny_config(tmp_path, *DIVERGING, *extra)
    assert run(cfg, progress=False).status == "complete"
    store = open_store(cfg.store_path)
    assert store.attrs["nonfinite_steps"] == [3, 6, 9] and store.steps.committed_lines == 12
    assert np.isnan(store.steps["loss0_train"][FIRST_BAD + 1:]).all()
    # step 1's losses (~3e10 nats) are finite as float32 means, beyond float16 per sample
    assert np.isinf(store["sample_loss_train"][1]).any() and np.isfinite(store["loss_train"][1]).all()
    result = compute(cfg.store_path)
    notes = " ".join(result.notes)
    assert "1 line(s) whose stored per-sample losses hold ±inf" in notes
    assert "all directions: 2 of 4 direction lines are non-finite" in notes
    assert np.isnan(result.per_line["s_opt"][result.per_line["nonfinite"]]).all()
    # the steps/ entries after the run went non-finite are not judged (regression: verify reported
    # "update_step nan != lr * direction_norm" there), the ones before still are
    assert [f for f in verify_store(cfg.store_path) if f.where.startswith("steps/")] == []

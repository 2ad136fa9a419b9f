"""The TensorBoard log of a run (``store.tensorboard``): one event per measured line and split at
the line's step, with the numbers the analysis computes from the finished store; a resume logs
each line once; under torchrun only process 0 logs; without tensorboard a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from losslines.analysis import compute, find_minimum, fit_polynomials
from losslines.analysis.polyfit import DEFAULT_WINDOW
from losslines.cli import main
from losslines.runner.config import ConfigError, config_to_dict
from losslines.runner.driver import run
from losslines.records import LineRecord, LineShape, SplitLine
from losslines.runner.tensorboard import QUANTITIES, TensorBoardSink, line_scalars
from losslines.store import open_store

SPLITS = ("train", "val", "batch")
# The tiny run's minima lie beyond its grid (±0.3); with rings of ±0.6 up to ±3.0 most lines have an
# interior, refined minimum, and the lines measured without every ring carry NaN points.
WIDER = ("measure.half_width=0.6", "measure.max_enlargements=4")


@pytest.fixture
def events():
    """Reads a log directory: ``{tag: (steps [E], values [E] float32)}`` as TensorBoard shows it."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def read(log_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every event
        acc.Reload()
        return {tag: (np.array([e.step for e in acc.Scalars(tag)]), np.array([e.value for e in acc.Scalars(tag)],
                                                                             dtype=np.float32))
                for tag in acc.Tags()["scalars"]}

    return read


def f32(values) -> np.ndarray:
    """What TensorBoard keeps of a float64 value."""
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def test_line_scalars_of_exact_parabolas():
    """L(s) = a (s - s0)^2 + c per split: the minimum, the ratios, a zero fit error, L(0)."""
    position = np.round(np.arange(-30, 31) * 0.02, 12)
    a, s0, c = np.array([[2.0], [0.5], [8.0]]), np.array([[0.17], [0.31], [-0.05]]), np.array([[2.3], [1.1], [0.4]])
    losses = a * (position - s0) ** 2 + c
    out = line_scalars(position, losses, direction_norm=4.0, update_step=0.2)
    assert list(out) == list(QUANTITIES)
    np.testing.assert_allclose(out["s_opt"], s0[:, 0], rtol=1e-12)
    np.testing.assert_allclose(out["s_opt_over_direction_norm"], s0[:, 0] / 4.0, rtol=1e-12)
    np.testing.assert_allclose(out["update_step_over_s_opt"], 0.2 / s0[:, 0], rtol=1e-12)
    np.testing.assert_allclose(out["fit_mae2"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["loss_at_0"], (a * s0**2 + c)[:, 0], rtol=1e-12)
    assert "fit_mae2" not in line_scalars(position, losses, 4.0, 0.2, window=None)


class ListSink:
    """An inner sink that keeps what it is given."""

    def __init__(self):
        self.shape, self.records = None, []

    def open(self, shape):
        self.shape = shape

    def append(self, record):
        self.records.append(record)
        return len(self.records) - 1


def test_the_sink_passes_records_on_and_skips_the_fit_on_a_coarse_grid(tmp_path, events):
    """With fewer than three grid points in the fit window the fit MAE is not logged; the rest is."""
    position = np.arange(-4, 5) * 0.25  # only s = 0 lies in |s| <= 0.2
    loss = 3.0 * (position - 0.5) ** 2 + 1.0
    record = LineRecord(step=7, epoch=0, lr=0.1, direction_norm=5.0, update_step=0.5, splits={
        "train": SplitLine(loss=loss, accuracy=np.full_like(loss, np.nan), loss_at_update=1.0, slope0=-3.0)})
    inner = ListSink()
    with TensorBoardSink(inner, tmp_path / "tb", purge_step=0) as sink:
        sink.open(LineShape(positions=position, n_samples={"train": 4}))
        assert sink.append(record) == 0 and inner.records == [record] and inner.shape.n_points == 9
    logged = events(tmp_path / "tb")
    assert set(logged) == {f"{q}/train" for q in QUANTITIES if q != "fit_mae2"}
    assert logged["s_opt/train"][0].tolist() == [7]
    np.testing.assert_allclose(logged["s_opt/train"][1], [0.5], rtol=1e-6)
    np.testing.assert_allclose(logged["update_step_over_s_opt/train"][1], [1.0], rtol=1e-6)
    np.testing.assert_allclose(logged["loss_at_0/train"][1], [1.75], rtol=1e-6)


def test_logged_scalars_are_the_analysis_of_the_finished_store(tmp_path, tiny_config, events):
    log_dir = tmp_path / "tb"
    cfg = tiny_config(tmp_path, *WIDER, f"store.tensorboard='{log_dir}'")
    assert run(cfg, progress=False).lines == 6
    logged = events(log_dir)
    assert set(logged) == {f"{q}/{s}" for q in QUANTITIES for s in SPLITS}
    store = open_store(cfg.store_path)
    steps = store["step"][...]
    np.testing.assert_array_equal(steps, [0, 2, 4, 6, 8, 10])
    for tag, (at, _) in logged.items():  # one event per measured line, at its training step
        np.testing.assert_array_equal(at, steps, err_msg=tag)

    # The train split: the report's own per-line numbers (losslines.compute on the finished store).
    per_line = compute(cfg.store_path).per_line
    assert per_line["refined"].sum() >= 4 and np.isnan(store["loss_train"][...]).any()  # not a degenerate case
    oracle = {"s_opt": per_line["s_opt"], "s_opt_over_direction_norm": per_line["ratio"],
              "update_step_over_s_opt": per_line["overshoot"], "fit_mae2": per_line["mae2"]}
    for quantity, expected in oracle.items():
        assert np.isfinite(expected).all(), quantity
        np.testing.assert_array_equal(logged[f"{quantity}/train"][1], f32(expected), err_msg=quantity)
    # The other splits: the same analysis functions on the stored lines of those splits.
    position = store.position[...]
    at_zero = np.flatnonzero(position == 0.0)
    assert at_zero.size == 1
    for split in SPLITS:
        losses = store[f"loss_{split}"][...].astype(np.float64)
        s_opt = find_minimum(position, losses).s_opt
        np.testing.assert_array_equal(logged[f"s_opt/{split}"][1], f32(s_opt), err_msg=split)
        np.testing.assert_array_equal(logged[f"s_opt_over_direction_norm/{split}"][1],
                                      f32(s_opt / store["direction_norm"][...].astype(np.float64)), err_msg=split)
        np.testing.assert_array_equal(logged[f"update_step_over_s_opt/{split}"][1],
                                      f32(store["update_step"][...].astype(np.float64) / s_opt), err_msg=split)
        mae2 = fit_polynomials(position, losses, degrees=(2,), window=DEFAULT_WINDOW).mae[2]
        np.testing.assert_array_equal(logged[f"fit_mae2/{split}"][1], f32(mae2), err_msg=split)
        np.testing.assert_array_equal(logged[f"loss_at_0/{split}"][1], f32(losses[:, at_zero[0]]), err_msg=split)
    # the splits are told apart (the batch line is not the training line)
    assert not np.array_equal(logged["s_opt/train"][1], logged["s_opt/batch"][1])


def test_a_resume_after_a_crash_logs_every_line_once(tmp_path, tiny_config, events):
    """Lines committed after the last checkpoint are measured again on resume; TensorBoard shows
    each line once (the resume purges the events logged after its checkpoint), with the values
    of the finished store."""
    log_dir = tmp_path / "tb"
    cfg = tiny_config(tmp_path, f"store.tensorboard='{log_dir}'")

    def crash(step):
        if step == 10:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, progress=False, on_step=crash)
    np.testing.assert_array_equal(events(log_dir)["s_opt/train"][0], [0, 2, 4, 6, 8, 10])  # flushed by the crash
    assert run(cfg, resume=True, progress=False).status == "complete"  # from the step-8 checkpoint
    assert len(list(log_dir.iterdir())) == 2  # one event file per invocation
    logged = events(log_dir)
    per_line = compute(cfg.store_path).per_line
    for tag, (at, _) in logged.items():
        np.testing.assert_array_equal(at, [0, 2, 4, 6, 8, 10], err_msg=tag)
    np.testing.assert_array_equal(logged["s_opt/train"][1], f32(per_line["s_opt"]))


def test_tensorboard_may_be_switched_on_when_resuming(tmp_path, tiny_config, events):
    cfg = tiny_config(tmp_path)
    assert run(cfg, progress=False, stop_at_step=5).status == "interrupted"
    log_dir = tmp_path / "tb"
    on = tiny_config(tmp_path, f"store.tensorboard='{log_dir}'")
    assert run(on, resume=True, progress=False).status == "complete"
    for tag, (at, _) in events(log_dir).items():  # the lines of this invocation
        np.testing.assert_array_equal(at, [6, 8, 10], err_msg=tag)


def test_without_tensorboard_the_run_stops_before_anything_is_written(tmp_path, tiny_config, toml_dumps,
                                                                      monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails: as if not installed
    log_dir = tmp_path / "tb"
    cfg = tiny_config(tmp_path, f"store.tensorboard='{log_dir}'")
    with pytest.raises(ConfigError, match=r"^config key 'store.tensorboard' needs the tensorboard package.*: "
                                          r"pip install 'losslines\[tensorboard\]'$"):
        run(cfg, progress=False)
    assert not Path(cfg.store_path).exists() and not log_dir.exists()
    with pytest.raises(ConfigError, match=r"pip install 'losslines\[tensorboard\]'"):
        TensorBoardSink(None, log_dir)
    config_file = tmp_path / "run.toml"
    config_file.write_text(toml_dumps(config_to_dict(cfg)))
    assert main(["run", str(config_file), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'losslines[tensorboard]'" in err


def test_off_by_default_and_no_log_written(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path)
    assert cfg.store.tensorboard == "" and cfg.tensorboard_dir is None
    run(cfg, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zarr", "run.zarr.ckpt"]


@pytest.mark.parametrize(("value", "message"), [
    ("'s3://bucket/tb'", "a local directory"),
    ("'runs/{run}/tb'", "'{name}' is the only placeholder"),
    ("'  '", "a local directory"),
    ("true", "expected a string"),
])
def test_a_bad_tensorboard_value_is_named(tmp_path, tiny_config, value, message):
    with pytest.raises(ConfigError, match=rf"'store.tensorboard'.*{message}"):
        tiny_config(tmp_path, f"store.tensorboard={value}")


def test_tensorboard_is_refused_where_it_logs_nothing_or_clobbers_the_store(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match=r"'store.tensorboard'.*record"):
        tiny_config(tmp_path, "store.tensorboard='tb'", "measure.mode='record'")
    with pytest.raises(ConfigError, match=r"'store.tensorboard'.*must not be the store"):
        tiny_config(tmp_path, f"store.tensorboard='{tmp_path / 'run.zarr'}'")
    named = tiny_config(tmp_path, "store.tensorboard='runs/{name}.tb'")
    assert named.tensorboard_dir == Path("runs/tiny.tb")


@pytest.mark.slow
def test_under_torchrun_only_process_0_logs(tmp_path, tiny_config, toml_dumps, events):
    log_dir = tmp_path / "tb"
    cfg = tiny_config(tmp_path, "threads=1", f"store.tensorboard='{log_dir}'")
    config_file = tmp_path / "run.toml"
    config_file.write_text(toml_dumps(config_to_dict(cfg)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "losslines", "run", str(config_file), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOSSLINES_DIST_TIMEOUT": "60"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(log_dir.iterdir())) == 1  # one event file: process 0's
    logged = events(log_dir)
    assert set(logged) == {f"{q}/{s}" for q in QUANTITIES for s in SPLITS}
    for tag, (at, _) in logged.items():
        np.testing.assert_array_equal(at, [0, 2, 4, 6, 8, 10], err_msg=tag)
    per_line = compute(cfg.store_path).per_line
    np.testing.assert_array_equal(logged["s_opt/train"][1], f32(per_line["s_opt"]))

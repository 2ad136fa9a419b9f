"""Reduced precision is an option, never silent: ``precision="bf16"`` runs the value forwards under
bfloat16 autocast, measures its error against fp32 on the first line and reports it with the
strategy (and so in the store's ``strategy_report``)."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from losslines.engine.evaluator import LineEvaluator, precision_error
from losslines.runner.config import ConfigError
from losslines.runner.driver import run
from losslines.store import open_store

POSITIONS = np.linspace(-0.5, 0.5, 9)


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_bf16_error_against_fp32_is_measured_on_the_first_line_and_reported(tiny, strategy, caplog):
    model = tiny.make_cnn()
    x, y = tiny.make_data(32)
    direction = tiny.random_direction(model)
    ev = LineEvaluator(model, x, y, bn="batch", bn_group=16, strategy=strategy, precision="bf16")
    with caplog.at_level(logging.INFO, logger="losslines.engine"):
        low = ev.measure(direction, POSITIONS)
    fp32 = LineEvaluator(model, x, y, bn="batch", bn_group=16, strategy=strategy).measure(direction, POSITIONS)
    report = ev.strategy_report
    assert report.precision == "bf16" and report.as_attrs()["precision"] == "bf16"
    expected = precision_error(torch.from_numpy(low.loss), torch.from_numpy(fp32.loss),
                               torch.from_numpy(low.sample_loss), torch.from_numpy(fp32.sample_loss))
    assert report.precision_error == pytest.approx(expected, rel=1e-12)
    assert report.precision_error["points"] == 9 and report.precision_error["samples"] == 32
    # bfloat16 really ran (not silently fp32), and its error is what bfloat16 gives, not more
    assert 0 < report.precision_error["sample_abs_max"] < 0.1 and 0 < report.precision_error["line_rel_max"] < 1e-2
    assert low.sample_loss.dtype == np.float32 and low.loss.dtype == np.float64
    assert low.slope0 == fp32.slope0  # slopes stay float32 forward-mode passes
    assert "precision bf16: error against fp32 on the first line" in caplog.text
    ev.measure(tiny.random_direction(model, seed=5), POSITIONS, slope=False)  # measured once, on the first line
    assert ev.strategy_report.precision_error == report.precision_error


def test_fp32_is_the_default_and_reports_no_precision_error(tiny):
    model = tiny.make_cnn()
    ev = LineEvaluator(model, *tiny.make_data(16), bn="running")
    ev.measure(tiny.random_direction(model), POSITIONS)
    assert ev.strategy_report.precision == "fp32" and ev.strategy_report.precision_error == {}


def test_bad_precision_settings_are_one_line_errors(tiny, tiny_config, tmp_path):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    with pytest.raises(ValueError, match="unknown precision 'fp16'; valid: fp32, bf16"):
        LineEvaluator(model, x, y, precision="fp16")
    with pytest.raises(ValueError, match=r"precision='bf16' \(measure.precision\) needs a float32 model"):
        LineEvaluator(copy.deepcopy(model).double(), x, y, precision="bf16")
    with pytest.raises(ConfigError, match="measure.precision"):
        tiny_config(tmp_path, "measure.precision='fp16'")


def test_a_bf16_run_stores_its_error_against_fp32(tmp_path, tiny_config):
    """Through the config: the store's strategy_report names the precision and its measured error;
    the lines are within bfloat16's error of an fp32 run, the slopes those of fp32."""
    fp32 = tiny_config(tmp_path, "train.steps=4", name="fp32")
    bf16 = tiny_config(tmp_path, "train.steps=4", "measure.precision='bf16'", name="bf16")
    assert bf16.measure.precision == "bf16" and fp32.measure.precision == "fp32"
    run(fp32, progress=False)
    run(bf16, progress=False)
    a, b = open_store(fp32.store_path), open_store(bf16.store_path)
    report = b.attrs["strategy_report"]
    assert report["precision"] == "bf16" and a.attrs["strategy_report"]["precision"] == "fp32"
    error = report["precision_error"]
    assert set(error) == {"line_rel_max", "sample_abs_max", "sample_abs_mean", "points", "samples"}
    assert 0 < error["line_rel_max"] < 1e-2 and error["points"] == len(b.position) + 1  # and the update point
    la, lb = a["loss_train"][:], b["loss_train"][:]
    np.testing.assert_allclose(lb[0], la[0], rtol=2 * error["line_rel_max"])  # the first line: the reported error
    np.testing.assert_allclose(lb, la, rtol=2e-2)
    np.testing.assert_allclose(b["slope0_train"][:], a["slope0_train"][:], rtol=1e-6)

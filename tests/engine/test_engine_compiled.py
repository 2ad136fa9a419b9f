"""The compiled strategy beyond the conformance suite (which runs it against the float64 oracle):
one compilation per run reused for every line and split (counted), the fixed-shape padding of
points, agreement with the loop within float32 reassociation, and its loud refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

from losslines.engine.evaluator import LineEvaluator
from losslines.engine.strategies import CompiledStrategy

POSITIONS = np.linspace(-0.5, 0.5, 7)


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def _assert_like_the_loop(ours, loop):
    """float32 reassociation: <= 1e-5 relative on the line, <= 1e-4 per sample."""
    np.testing.assert_allclose(ours.loss, loop.loss, rtol=1e-5)
    np.testing.assert_allclose(ours.sample_loss, loop.sample_loss, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ours.accuracy, loop.accuracy)


def test_compiled_once_per_run_and_reused_for_every_line_and_split(tiny):
    """Like a sampler: one strategy instance for a train split of 40 samples (BatchNorm groups of
    16, 16 and a last one of 8) and a held-out split of 16. Two graphs — a group of 16 and the
    last group of 8 — serve every later line (new θ_t, new direction) and the other split."""
    model = tiny.make_cnn()
    strategy = CompiledStrategy()
    train = LineEvaluator(model, *tiny.make_data(40), bn="batch", bn_group=16, strategy=strategy)
    val = LineEvaluator(model, *tiny.make_data(16, seed=7), bn="batch", bn_group=16, strategy=strategy)
    before = _graphs()
    first = train.measure(tiny.random_direction(model), POSITIONS, slope=False)
    val.measure(tiny.random_direction(model), POSITIONS, slope=False)
    report = strategy.report
    assert report.graphs == 2 and _graphs() - before == 2 and report.compile_seconds > 0
    assert report.as_attrs()["compile_seconds"] == report.compile_seconds and report.as_attrs()["graphs"] == 2
    loop = LineEvaluator(model, *tiny.make_data(40), bn="batch", bn_group=16, strategy="loop")
    for seed in (3, 4):  # later lines: another θ_t and direction, the same shapes
        g = torch.Generator().manual_seed(seed)
        theta = {n: p.detach() + 0.05 * torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
        direction = tiny.random_direction(model, seed=seed)
        ours = train.measure(direction, POSITIONS, params=theta, slope=False)
        val.measure(direction, POSITIONS, params=theta, slope=False)
        _assert_like_the_loop(ours, loop.measure(direction, POSITIONS, params=theta, slope=False))
        assert not np.allclose(ours.loss, first.loss)
    assert strategy.report.graphs == 2 and _graphs() - before == 2  # no recompilation
    assert strategy.report.compile_seconds == report.compile_seconds


def test_a_short_block_of_points_is_padded_to_the_compiled_shape(tiny):
    """Blocks of 3 points: the evaluator's first call (1 point), chunks of 3 and a last one of 1
    are padded with their last position and cut back — one graph, the loop's values."""
    model = tiny.make_cnn()
    x, y = tiny.make_data(24)
    direction = tiny.random_direction(model)
    strategy = CompiledStrategy(block=3)
    before = _graphs()
    ours = LineEvaluator(model, x, y, bn="running", strategy=strategy, point_chunk=3).measure(direction, POSITIONS)
    loop = LineEvaluator(model, x, y, bn="running", strategy="loop").measure(direction, POSITIONS)
    _assert_like_the_loop(ours, loop)
    assert ours.slope0 == pytest.approx(loop.slope0, rel=1e-5)
    assert strategy.report.graphs == 1 and _graphs() - before == 1
    assert ours.strategy == "compiled"


def test_compiled_refuses_what_it_cannot_compute_in_one_line(tiny, monkeypatch):
    x, y = tiny.make_data(16)
    dropout = tiny.make_cnn(dropout=0.5)
    with pytest.raises(ValueError, match=r"strategy='compiled' cannot measure train-mode dropout \(dropout='fixed'\)"):
        LineEvaluator(dropout, x, y, bn="batch", bn_group=8, dropout="fixed", strategy="compiled").measure(
            tiny.random_direction(dropout), POSITIONS, dropout_seed=1)
    with pytest.raises(ValueError, match="block >= 1"):
        CompiledStrategy(block=0)

    class Breaks(nn.Module):  # a graph break: not compilable whole (fullgraph), never run half eager
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3 * 8 * 8, 5)

        def forward(self, x):
            torch._dynamo.graph_break()
            return self.lin(x.flatten(1))

    model = Breaks()
    with pytest.raises(RuntimeError, match=r"measure.strategy='compiled' could not compile or run this model.*"
                                           r"use measure.strategy='loop'"):
        LineEvaluator(model, x, y, bn="running", strategy="compiled").measure(tiny.random_direction(model), POSITIONS)

    def unavailable(*args, **kwargs):
        raise RuntimeError("no compiler on this platform")

    monkeypatch.setattr(torch, "compile", unavailable)
    with pytest.raises(RuntimeError, match=r"measure.strategy='compiled': torch.compile is not available here "
                                           r"\(no compiler on this platform\)"):
        LineEvaluator(model, x, y, bn="running", strategy="compiled").measure(tiny.random_direction(model), POSITIONS)


def test_auto_times_compiled_only_when_a_line_is_long_enough_to_amortise_it(tiny):
    from losslines.engine.strategies import AutoStrategy

    model = tiny.make_cnn()
    x, y = tiny.make_data(32)
    direction = tiny.random_direction(model)
    short = AutoStrategy(points=2, repeats=1)  # a tiny line takes milliseconds: nothing compiled
    LineEvaluator(model, x, y, bn="batch", bn_group=16, strategy=short).measure(direction, POSITIONS, slope=False)
    assert set(short.report.seconds_per_point) == {"loop", "vmap"} and short.report.graphs == 0
    long = AutoStrategy(points=2, repeats=1, compile_after=0.0)  # every line counts as long
    m = LineEvaluator(model, x, y, bn="batch", bn_group=16, strategy=long).measure(direction, POSITIONS, slope=False)
    report = long.report
    assert set(report.seconds_per_point) == {"loop", "vmap", "compiled"} and m.strategy == report.chosen
    assert report.graphs >= 1 and report.compile_seconds > 0 and report.as_attrs()["compile_seconds"] > 0
    with pytest.raises(ValueError, match="compile_after >= 0"):
        AutoStrategy(compile_after=-1.0)

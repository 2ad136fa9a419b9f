"""A new metric is one class plus one registration; the registry's errors name the valid choices."""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest

from losslines.analysis import (
    AnalysisOptions,
    Metric,
    ReportPart,
    add_analyze_arguments,
    analyze_store,
    get_metric,
    register_metric,
    registered_metrics,
    run_analyze,
    unregister_metric,
)
from losslines.analysis.metric import FigureSpec, Stage
from losslines.analysis.registry import computation_order
from losslines.store import open_store


@dataclass(frozen=True)
class ToyOptions:
    scale: float = 1.0
    tag: str = field(default="plain", metadata={"help": "a label"})


def _toy_figure(res):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot(res.lines, res.per_line["toy_range"])
    return fig


class ToyMetric(Metric):
    """Loss range of each line on the grid, times ``scale`` (a metric written in a test)."""

    name = "toy"
    options_type = ToyOptions

    def block(self, plan, block):
        scale = self.own_options(plan.setup.options).scale
        return {"toy_range": scale * np.ptp(block.f64("loss_train"), axis=1)}

    def summary(self, analysis):
        opts = self.own_options(analysis.options)
        return {"toy": {"max_range": float(analysis.per_line["toy_range"].max()), "tag": opts.tag}}

    def report(self, summary):
        return ReportPart(headline=(f"| toy: max loss range | {summary['toy']['max_range']:.4g} |",),
                          section=("", "## Toy", "", f"Tagged {summary['toy']['tag']}."))

    def figures(self, analysis):
        return (FigureSpec("toy ranges", "toy", _toy_figure),)


@contextmanager
def registered(metric):
    """``metric`` registered for the duration of the block."""
    register_metric(metric)
    try:
        yield metric
    finally:
        unregister_metric(metric.name)


@pytest.fixture
def toy():
    with registered(ToyMetric()) as metric:
        yield metric


def test_a_registered_metric_appears_in_every_output_with_no_other_edit(toy, parabola_store, tmp_path):
    rep = analyze_store(parabola_store["path"], tmp_path / "r", options=AnalysisOptions(n_draws=2, formats=("png",)))
    saved = np.load(rep.out_dir / "per_line.npz")
    stored = open_store(parabola_store["path"])["loss_train"][...].astype(np.float64)
    np.testing.assert_allclose(saved["line_toy_range"], np.ptp(stored, axis=1))  # one value per line
    written = json.loads(rep.metrics.read_text())
    assert written["toy"] == {"max_range": pytest.approx(np.ptp(stored, axis=1).max()), "tag": "plain"}
    assert list(written)[list(written).index("toy") + 1] == "skipped"  # after the built-in metrics
    text = rep.report.read_text()
    assert "| toy: max loss range |" in text and "## Toy" in text and "![toy ranges](toy.png)" in text
    assert text.index("| toy: max loss range |") < text.index("## Step rules")  # in the headline table
    assert (rep.out_dir / "toy.png").is_file()


def test_a_metric_declares_its_own_command_line_options(toy, parabola_store, tmp_path):
    parser = add_analyze_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(parabola_store["path"]), "--out", str(tmp_path / "r"), "--no-figures",
                              "--toy-scale", "2.5", "--toy-tag", "scaled"])
    rep = run_analyze(args)
    written = json.loads(rep.metrics.read_text())
    assert written["options"]["metric_options"]["toy"] == {"scale": 2.5, "tag": "scaled"}
    assert written["toy"]["tag"] == "scaled"
    plain = analyze_store(parabola_store["path"], tmp_path / "p", figures=False)
    np.testing.assert_allclose(rep.result.per_line["toy_range"], 2.5 * plain.result.per_line["toy_range"])


def test_without_metric_options_metrics_json_options_are_unchanged(parabola_store, tmp_path):
    rep = analyze_store(parabola_store["path"], tmp_path / "r", figures=False)
    assert "metric_options" not in rep.summary["options"]


def test_unregistering_restores_the_built_in_metrics(parabola_store):
    before = [m.name for m in registered_metrics()]
    register_metric(ToyMetric())
    assert [m.name for m in registered_metrics()] == before + ["toy"]
    unregister_metric("toy")
    assert [m.name for m in registered_metrics()] == before


def test_registry_errors_list_the_valid_names(toy):
    with pytest.raises(KeyError, match="registered: .*'rules'.*'toy'"):
        get_metric("nope")
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        unregister_metric("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_metric(ToyMetric())

    class Nameless(Metric):
        name = "not a name"

    with pytest.raises(ValueError, match="identifier"):
        register_metric(Nameless())


def test_bad_metric_options_are_errors_that_list_the_valid_names(toy, parabola_store, tmp_path):
    with pytest.raises(ValueError, match=r"valid: \[.*'toy'\]"):
        analyze_store(parabola_store["path"], tmp_path / "r", figures=False,
                      options=AnalysisOptions(metric_options={"toys": ToyOptions()}))
    with pytest.raises(ValueError, match="must be a ToyOptions"):
        analyze_store(parabola_store["path"], tmp_path / "r", figures=False,
                      options=AnalysisOptions(metric_options={"toy": {"scale": 2.0}}))


def test_a_metric_that_needs_a_missing_metric_is_an_error():
    class Needy(Metric):
        name = "needy"
        needs = ("nowhere",)

    with pytest.raises(ValueError, match="needs 'nowhere'.*not among the metrics"):
        computation_order(registered_metrics() + (Needy(),))

    class Elsewhere(Metric):
        name = "elsewhere"
        stage = Stage.SAMPLES
        needs = ("minimum",)

    with pytest.raises(ValueError, match="share a stage"):
        computation_order(registered_metrics() + (Elsewhere(),))


def test_two_metrics_writing_the_same_per_line_name_is_an_error(parabola_store, tmp_path):
    class Clash(Metric):
        name = "clash"

        def block(self, plan, block):
            return {"s_opt": np.zeros(block.lines.size)}

    with registered(Clash()), pytest.raises(ValueError, match="'s_opt', which metric 'minimum' already wrote"):
        analyze_store(parabola_store["path"], tmp_path / "r", figures=False)


def test_a_summary_without_the_metric_name_is_an_error(parabola_store, tmp_path):
    class Anonymous(ToyMetric):
        name = "anonymous"

        def summary(self, analysis):
            return {"something_else": 1}

    with registered(Anonymous()), pytest.raises(ValueError, match="must have the key 'anonymous'"):
        analyze_store(parabola_store["path"], tmp_path / "r", figures=False)

"""The argparse layer of `losslines analyze`, the no-torch rule, and xarray access."""

import argparse
import subprocess
import sys

import numpy as np
import pytest

from losslines.analysis import add_analyze_arguments, run_analyze
from losslines.store.importers import add_import_arguments


def test_run_analyze_from_parsed_arguments(parabola_store, tmp_path, capsys):
    parser = add_analyze_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(parabola_store["path"]), "--out", str(tmp_path / "r"), "--lines", "0:8",
                              "--window", "0.15", "--plot-lines", "3", "--sgd-lrs", "0.05,0.1",
                              "--batch-sizes", "4,16,32", "--draws", "3", "--formats", "png"])
    rep = run_analyze(args)
    assert "wrote" in capsys.readouterr().out
    assert rep.result.lines.tolist() == list(range(8)) and rep.result.options.window == 0.15
    assert [v.line for v in rep.result.views] == [3]
    assert set(rep.result.rules) >= {"sgd(lr=0.05)", "sgd(lr=0.1)"}
    assert rep.result.batch_study.batch_sizes.tolist() == [4, 16, 32]
    assert (tmp_path / "r" / "line_000003.png").is_file() and not (tmp_path / "r" / "metrics.pdf").exists()
    with pytest.raises(SystemExit):
        parser.parse_args([str(parabola_store["path"]), "--sgd-lrs", "a,b"])
    with pytest.raises(ValueError, match="format"):
        run_analyze(parser.parse_args([str(parabola_store["path"]), "--formats", "gif"]))


def test_import_arguments():
    args = add_import_arguments(argparse.ArgumentParser()).parse_args(["d", "--out", "s.zarr", "--lr", "0.1"])
    assert (args.dir, args.out, args.lr, args.sample_dtype) == ("d", "s.zarr", 0.1, "float32")


def test_analysis_never_imports_torch(parabola_store, tmp_path):
    code = ("import sys; from losslines.analysis import analyze_store; "
            f"analyze_store({str(parabola_store['path'])!r}, {str(tmp_path / 'r')!r}, figures=False); "
            "assert 'torch' not in sys.modules, 'analysis imported torch'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_to_xarray_gives_the_same_lines_lazily(parabola_store):
    from losslines.store import open_store

    ds = open_store(parabola_store["path"]).to_xarray()
    assert ds["sample_loss_train"].dims == ("line", "point", "sample_train")
    per_sample_mean = ds["sample_loss_train"].mean("sample_train").compute().values
    np.testing.assert_allclose(per_sample_mean, ds["loss_train"].values, rtol=1e-5)

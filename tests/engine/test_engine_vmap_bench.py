"""The benchmark scripts are exercised at tiny sizes on CPU: gpu_check.sh parses and exits
cleanly without CUDA, its dry run (GPU_CHECK_DRY_RUN=1: tests collected, gpu_bench.py --dry-run)
writes its JSON, the engine suite runs."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def run(cmd, **kwargs):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_script_parses_and_exits_cleanly_without_cuda(tmp_path):
    assert run(["bash", "-n", str(BENCH / "gpu_check.sh")]).returncode == 0
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the script would run the real check")
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = run(["bash", str(BENCH / "gpu_check.sh")], env=env)
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU is visible" in done.stderr
    assert json.loads((tmp_path / "gpu_check.json").read_text())["status"] == "no_cuda"


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash, timeout")
def test_gpu_check_dry_run_runs_every_step_on_cpu_and_writes_its_figures(tmp_path):
    # compiled is left out here for time (its compilation takes 10-40 s on CPU); the engine suite
    # below and bench/gpu_bench.py --dry-run by hand run it
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "GPU_CHECK_DRY_RUN": "1",
           "GPU_CHECK_METHODS": "loop,vmap,vmap+triton,forward_bound,baseline"}
    done = run(["bash", str(BENCH / "gpu_check.sh")], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DRY RUN on CPU" in done.stdout and "x baseline" in done.stdout  # report.py's table
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "complete" and report["dry_run"] and report["workload"]["evaluations"] == 48
    methods = report["methods"]
    for name in ("loop", "vmap", "baseline", "forward_bound"):
        assert methods[name]["evaluations_per_second"] > 0, name
        assert 0 < report["mfu"][name]["mfu"] < 1, name
    assert methods["loop"]["warmup"] == "2 points" and methods["vmap"]["warmup"] == "whole run"
    for name in ("vmap", "baseline"):  # same per-sample losses as the loop (float32; baseline drifts)
        assert methods[name]["max_abs_diff_vs_first"] < 1e-3, name
    assert "skipped" in methods["vmap+triton"] or methods["vmap+triton"]["evaluations_per_second"] > 0
    assert {"loop/baseline", "vmap/baseline", "loop/forward_bound", "vmap/forward_bound", "vmap/loop"} \
        <= set(report["ratios"])
    assert report["flops"]["per_sample_forward"] > 0 and report["flops"]["matmul_peak"]["flops_per_second"] > 0
    assert report["auto"]["requested"] == "auto" and report["auto"]["chosen"] in ("loop", "vmap")
    assert report["tests"]["exit_status"] == 0 and "collected" in report["tests"]["summary"]


def test_gpu_bench_skips_compiled_with_its_reason_where_no_such_strategy_is_registered(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCH / "gpu_bench.py")
    gpu_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_bench)
    assert gpu_bench.DEFAULT_METHODS[:3] == ["loop", "vmap", "compiled"]
    assert gpu_bench.why_skipped("compiled", None) is None
    monkeypatch.setattr(gpu_bench, "STRATEGIES", {"loop": None, "vmap": None})
    assert "no 'compiled' strategy is registered" in gpu_bench.why_skipped("compiled", None)
    assert "has no method 'fast'" in gpu_bench.why_skipped("fast", None)
    refused = run([sys.executable, str(BENCH / "gpu_bench.py"), "--methods", "loop,fast", "--dry-run"])
    assert refused.returncode == 2 and "unknown method(s) ['fast']" in refused.stderr


def test_engine_benchmark_suite_runs_at_tiny_size(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "LOSSLINES_BENCH_SAMPLES": "8", "LOSSLINES_BENCH_POINTS": "2",
           "LOSSLINES_BENCH_BATCHES": "4", "LOSSLINES_BENCH_WIDTH": "0.125", "LOSSLINES_BENCH_SIZE": "8",
           "LOSSLINES_BENCH_ROUNDS": "1", "LOSSLINES_BENCH_JSON": str(out)}
    done = run([sys.executable, "-m", "pytest", "bench/", "-q", "-p", "no:cacheprovider"], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout
    figures = json.loads(out.read_text())["batches"]["4"]
    assert set(figures["seconds"]) == {"loop", "vmap", "compiled", "baseline", "forward_bound"}
    assert figures["ratios"]["vmap/loop"] > 0 and figures["ratios"]["loop/baseline"] > 0
    assert figures["ratios"]["compiled/loop"] > 0
    assert set(figures["compile_seconds"]) == {"compiled"} and figures["compile_seconds"]["compiled"] > 0
    assert set(figures["mfu"]) == set(figures["seconds"]) and all(0 < f["mfu"] < 1 for f in figures["mfu"].values())
    assert json.loads(out.read_text())["flops"]["matmul_peak"]["flops_per_second"] > 0

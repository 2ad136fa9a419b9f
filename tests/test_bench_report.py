"""bench/report.py: the three benchmark JSON files it reads become one table of throughput
ratios and MFU (bench/ is not a package: the module is loaded from its file)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[1] / "bench" / "report.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("bench_report", REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SECONDS = {"loop": 2.0, "vmap": 4.0, "compiled": 1.0, "baseline": 3.0, "forward_bound": 1.5}


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _bench_engine(tmp_path):
    mfu = {m: {"flops_per_second": 1e9 / s, "mfu": 0.01 / s} for m, s in SECONDS.items()}
    return _write(tmp_path, "bench_engine.json", {"config": {"device": "cpu"}, "batches": {
        "128": {"seconds": SECONDS, "ratios": {}, "mfu": mfu},
        "32": {"seconds": {"loop": 1.0, "baseline": 1.0}}}})


def _pytest_benchmark(tmp_path):
    benches = [{"name": f"test_throughput[32-{m}]", "params": {"batch": 32, "method": m},
                "stats": {"min": s, "mean": s + 1}, "extra_info": {"mfu": 0.02}}
               for m, s in {"loop": 2.0, "vmap": 1.0, "baseline": 4.0}.items()]
    benches.append({"name": "test_interleaved_ratios[32]", "params": {"batch": 32}, "stats": {"min": 9.0}})
    return _write(tmp_path, "bench.json", {"machine_info": {}, "benchmarks": benches})


def _gpu_check(tmp_path):
    return _write(tmp_path, "gpu_check.json", {
        "workload": {"model": "resnet20", "samples": 4000, "points": 167, "batch": 128}, "machine": {"gpu": "H200"},
        "methods": {"loop": {"seconds": 20.0}, "vmap": {"seconds": 4.0}, "compiled": {"skipped": "not registered"},
                    "baseline": {"seconds": 16.0}, "forward_bound": {"seconds": 8.0}},
        "mfu": {"vmap": {"mfu": 0.41}}})


def test_ratios_are_throughput_over_each_reference_in_the_same_run(report, tmp_path):
    table = report.rows(report.load(_bench_engine(tmp_path)))
    assert [(r.setting, r.method) for r in table] == [
        ("batch 32", "loop"), ("batch 32", "baseline"),
        ("batch 128", "loop"), ("batch 128", "vmap"), ("batch 128", "compiled"), ("batch 128", "baseline"),
        ("batch 128", "forward_bound")]
    by = {(r.setting, r.method): r for r in table}
    compiled = by["batch 128", "compiled"]
    assert compiled.ratios == {"x baseline": 3.0, "x fwd bound": 1.5, "x loop": 2.0}
    assert compiled.mfu == pytest.approx(0.01)
    assert by["batch 128", "vmap"].ratios["x loop"] == 0.5  # vmap / loop
    assert by["batch 32", "loop"].ratios["x fwd bound"] is None and by["batch 32", "loop"].mfu is None


def test_pytest_benchmark_json_takes_each_method_s_fastest_round(report, tmp_path):
    (w,) = report.load(_pytest_benchmark(tmp_path))
    assert w.setting == "batch 32" and w.seconds == {"loop": 2.0, "vmap": 1.0, "baseline": 4.0}
    assert w.mfu == {"loop": 0.02, "vmap": 0.02, "baseline": 0.02}


def test_gpu_check_json_skipped_methods_have_no_row(report, tmp_path):
    (w,) = report.load(_gpu_check(tmp_path))
    assert w.setting == "resnet20 N=4000 K=167 batch 128 H200" and "compiled" not in w.seconds
    vmap = next(r for r in report.rows([w]) if r.method == "vmap")
    assert vmap.ratios == {"x baseline": 4.0, "x fwd bound": 2.0, "x loop": 5.0} and vmap.mfu == 0.41


def test_main_prints_one_table_of_every_file(report, tmp_path, capsys):
    files = [_bench_engine(tmp_path), _pytest_benchmark(tmp_path), _gpu_check(tmp_path)]
    assert report.main([str(f) for f in files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["source", "workload", "method", "x", "baseline", "x", "fwd", "bound", "x", "loop", "MFU"]
    compiled = next(line for line in out if line.split()[:1] == ["compiled"])
    assert compiled.split() == ["compiled", "3.00x", "1.50x", "2.00x", "1.0", "%"]
    assert sum(1 for line in out if line.startswith("gpu_check.json")) == 1  # the source once per block
    assert any(line.split()[-2:] == ["41.0", "%"] for line in out)
    assert report.main([str(files[0]), "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("| source | workload | method | x baseline |")


def test_a_file_it_cannot_read_is_one_line_and_exit_2(report, tmp_path, capsys):
    no_cuda = _write(tmp_path, "nc.json", {"status": "no_cuda", "message": "no CUDA GPU visible to torch"})
    assert report.main([str(no_cuda)]) == 2
    err = capsys.readouterr().err
    assert "not a benchmark JSON" in err and "no_cuda" in err and len(err.strip().splitlines()) == 1
    assert report.main([str(tmp_path / "absent.json")]) == 2

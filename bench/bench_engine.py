"""Engine throughput against the reference baseline and the forward bound, in one run (DESIGN §5).

    pytest bench/ --benchmark-enable                      # small CPU sizes, a few minutes
    LOSSLINES_BENCH_SAMPLES=4000 LOSSLINES_BENCH_POINTS=167 LOSSLINES_BENCH_DEVICE=cuda \\
        pytest bench/ --benchmark-enable                  # the paper's sizes

For each batch size (BatchNorm group = DataLoader batch) it times ``loop``, ``vmap``, the
reference baseline and the forward bound on the same workload (``workload.py``), checks that
they computed the same losses, and writes ``sample-point evaluations per second`` and the ratios
engine/baseline, engine/forward-bound and vmap/loop to a JSON file (``LOSSLINES_BENCH_JSON``,
default ``bench_engine.json`` in the working directory), also printed at the end.

Environment (defaults): LOSSLINES_BENCH_MODEL (resnet20), _WIDTH (1.0), _SIZE (32), _SAMPLES
(256), _POINTS (4), _BATCHES (32,128), _DEVICE (cpu), _THREADS (1, CPU only), _ROUNDS (2),
_MEMORY (bytes of the engine's memory budget; default: the device default), _JSON.
"""

from __future__ import annotations

import json
import os
import platform

import numpy as np
import pytest
import torch

from workload import METHODS, make_workload, ratios, timed, triton_available

ENV = {
    "model": os.environ.get("LOSSLINES_BENCH_MODEL", "resnet20"),
    "width": float(os.environ.get("LOSSLINES_BENCH_WIDTH", "1.0")),
    "size": int(os.environ.get("LOSSLINES_BENCH_SIZE", "32")),
    "samples": int(os.environ.get("LOSSLINES_BENCH_SAMPLES", "256")),
    "points": int(os.environ.get("LOSSLINES_BENCH_POINTS", "4")),
    "batches": [int(b) for b in os.environ.get("LOSSLINES_BENCH_BATCHES", "32,128").split(",")],
    "device": os.environ.get("LOSSLINES_BENCH_DEVICE", "cpu"),
    "threads": int(os.environ.get("LOSSLINES_BENCH_THREADS", "1")),
    "rounds": int(os.environ.get("LOSSLINES_BENCH_ROUNDS", "2")),
    "memory_budget": int(os.environ["LOSSLINES_BENCH_MEMORY"]) if "LOSSLINES_BENCH_MEMORY" in os.environ else None,
}
ENGINE_METHODS = ["loop", "vmap", "baseline", "forward_bound"]
_SECONDS: dict[int, dict[str, float]] = {}
_RESULTS: dict[int, dict[str, np.ndarray]] = {}


@pytest.fixture(scope="module", autouse=True)
def threads_and_report(request):
    before = torch.get_num_threads()
    if ENV["device"] == "cpu":
        torch.set_num_threads(ENV["threads"])
    yield
    torch.set_num_threads(before)
    report = {
        "config": {**ENV, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                   "benchmark_enabled": bool(request.config.getoption("benchmark_enable")
                                                or not request.config.getoption("benchmark_disable"))},
        "unit": "sample-point evaluations per second (K * N / fastest round)",
        "batches": {},
    }
    for batch, seconds in sorted(_SECONDS.items()):
        evals = ENV["points"] * ENV["samples"]
        report["batches"][str(batch)] = {
            "seconds": seconds,
            "evaluations_per_second": {m: evals / s for m, s in seconds.items()},
            "ratios": ratios(seconds),
        }
    path = os.environ.get("LOSSLINES_BENCH_JSON", "bench_engine.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line("\n" + json.dumps(report["batches"], indent=2) + f"\n(written to {path})")


_WORKLOADS = {}


def workload(batch: int):
    if batch not in _WORKLOADS:
        _WORKLOADS[batch] = make_workload(model=ENV["model"], samples=ENV["samples"], points=ENV["points"],
                                          batch=batch, width=ENV["width"], size=ENV["size"],
                                          device=ENV["device"], memory_budget=ENV["memory_budget"])
    return _WORKLOADS[batch]


def _methods():
    names = list(ENGINE_METHODS)
    if ENV["device"] != "cpu":
        names.insert(2, "vmap+triton")
    return names


@pytest.mark.parametrize("method", _methods())
@pytest.mark.parametrize("batch", ENV["batches"])
def test_throughput(benchmark, batch, method):
    w = workload(batch)
    if method == "vmap+triton" and (why := triton_available(w)) is not None:
        pytest.skip(why)
    fn = METHODS[method](w)
    times, result = [], {}

    def run():
        out = fn()
        result["out"] = out
        return out

    def recorded():
        times.append(timed(run, w.device))

    benchmark.group = f"batch {batch}"
    benchmark.extra_info.update(evaluations=w.evaluations, batch=batch)
    benchmark.pedantic(recorded, rounds=ENV["rounds"], warmup_rounds=1, iterations=1)
    best = min(times)
    _SECONDS.setdefault(batch, {})[method] = best
    benchmark.extra_info["evaluations_per_second"] = w.evaluations / best
    out = result["out"]
    if method != "forward_bound":  # every method computed the same per-sample losses
        _RESULTS.setdefault(batch, {})[method] = out if isinstance(out, np.ndarray) else out.sample_loss
        first = next(iter(_RESULTS[batch].values()))
        np.testing.assert_allclose(_RESULTS[batch][method], first, rtol=2e-3, atol=2e-4)

"""Engine throughput against the reference baseline and the forward bound, in one run (docs/design.md, "Where the numbers come from").

    pytest bench/ --benchmark-enable                      # small CPU sizes, a few minutes
    LOSSLINES_BENCH_SAMPLES=4000 LOSSLINES_BENCH_POINTS=167 LOSSLINES_BENCH_DEVICE=cuda \\
        pytest bench/ --benchmark-enable                  # the paper's sizes

For each batch size (BatchNorm group = DataLoader batch) it times ``loop``, ``vmap``,
``compiled`` (its compilation happens in the warm-up call and is reported apart, as
``compile_seconds``), the reference baseline and the forward bound on the same workload (``workload.py``) — one
pytest-benchmark test per method (the table), then ``test_interleaved_ratios``, which runs the
methods round-robin for ``_ROUNDS`` rounds so that load from other processes hits them alike —
checks that they computed the same losses, and writes the interleaved figures (fastest round):
``sample-point evaluations per second`` and the ratios engine/baseline, engine/forward-bound and
vmap/loop, to a JSON file (``LOSSLINES_BENCH_JSON``, default ``bench_engine.json`` in the
working directory), also printed at the end. Each method's achieved FLOP/s and MFU against a
matmul peak timed in the same run (``flops.py``) go into that JSON (``flops``, per batch
``mfu``) and into pytest-benchmark's ``extra_info``. ``python bench/report.py FILE...`` turns
either JSON into one table of ratios.

Environment (defaults): LOSSLINES_BENCH_MODEL (resnet20), _WIDTH (1.0), _SIZE (32), _SAMPLES
(256), _POINTS (4), _BATCHES (32,128), _DEVICE (cpu), _THREADS (1, CPU only), _ROUNDS (3),
_MEMORY (bytes of the engine's memory budget; default: the device default), _JSON.
"""

from __future__ import annotations

import functools
import json
import os
import platform

import numpy as np
import pytest
import torch

from flops import forward_flops_per_sample, matmul_peak, mfu_table
from workload import METHODS, compile_seconds, make_workload, ratios, timed, triton_available

ENV = {
    "model": os.environ.get("LOSSLINES_BENCH_MODEL", "resnet20"),
    "width": float(os.environ.get("LOSSLINES_BENCH_WIDTH", "1.0")),
    "size": int(os.environ.get("LOSSLINES_BENCH_SIZE", "32")),
    "samples": int(os.environ.get("LOSSLINES_BENCH_SAMPLES", "256")),
    "points": int(os.environ.get("LOSSLINES_BENCH_POINTS", "4")),
    "batches": [int(b) for b in os.environ.get("LOSSLINES_BENCH_BATCHES", "32,128").split(",")],
    "device": os.environ.get("LOSSLINES_BENCH_DEVICE", "cpu"),
    "threads": int(os.environ.get("LOSSLINES_BENCH_THREADS", "1")),
    "rounds": int(os.environ.get("LOSSLINES_BENCH_ROUNDS", "3")),
    "memory_budget": int(os.environ["LOSSLINES_BENCH_MEMORY"]) if "LOSSLINES_BENCH_MEMORY" in os.environ else None,
}
ENGINE_METHODS = ["loop", "vmap", "compiled", "baseline", "forward_bound"]
_SECONDS: dict[int, dict[str, float]] = {}
_COMPILE: dict[int, dict[str, float]] = {}  # seconds each compiling method spent compiling (warm-up, not timed)
_RESULTS: dict[int, dict[str, np.ndarray]] = {}


@pytest.fixture(scope="module", autouse=True)
def threads_and_report(request):
    before = torch.get_num_threads()
    if ENV["device"] == "cpu":
        torch.set_num_threads(ENV["threads"])
    yield
    peak = _peak() if _SECONDS else None  # with the suite's threads, before they are restored
    torch.set_num_threads(before)
    report = {
        "config": {**ENV, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                   "benchmark_enabled": bool(request.config.getoption("benchmark_enable")
                                                or not request.config.getoption("benchmark_disable"))},
        "unit": "sample-point evaluations per second (K * N / fastest of the interleaved rounds)",
        "batches": {},
    }
    for batch, seconds in sorted(_SECONDS.items()):
        evals = ENV["points"] * ENV["samples"]
        report["batches"][str(batch)] = {
            "seconds": seconds,
            "evaluations_per_second": {m: evals / s for m, s in seconds.items()},
            "ratios": ratios(seconds),
            "compile_seconds": _COMPILE.get(batch, {}),
            "flops_per_sample": _flops_per_sample(batch),
            "mfu": mfu_table(seconds, evaluations=evals, flops_per_sample=_flops_per_sample(batch),
                             peak_flops_per_second=peak["flops_per_second"]),
        }
    if peak is not None:
        report["flops"] = {"counted_with": "torch.utils.flop_counter.FlopCounterMode, one forward of a BatchNorm group",
                           "matmul_peak": peak}
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


@functools.cache
def _peak() -> dict:
    """The matmul peak of this run's device and threads (``flops.matmul_peak``), measured once."""
    return matmul_peak(torch.device(ENV["device"]))


@functools.cache
def _flops_per_sample(batch: int) -> float:
    w = workload(batch)
    return forward_flops_per_sample(w.model, w.inputs[:batch])


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
    benchmark.pedantic(recorded, rounds=1, warmup_rounds=1, iterations=1)
    benchmark.extra_info["evaluations_per_second"] = w.evaluations / min(times)
    achieved = mfu_table({method: min(times)}, evaluations=w.evaluations, flops_per_sample=_flops_per_sample(batch),
                         peak_flops_per_second=_peak()["flops_per_second"])[method]
    benchmark.extra_info.update(achieved, matmul_peak_flops_per_second=_peak()["flops_per_second"])
    if (compiling := compile_seconds(fn)) is not None:
        benchmark.extra_info["compile_seconds"] = compiling
    out = result["out"]
    if method != "forward_bound":  # every method computed the same per-sample losses
        _RESULTS.setdefault(batch, {})[method] = out if isinstance(out, np.ndarray) else out.sample_loss
        first = next(iter(_RESULTS[batch].values()))
        np.testing.assert_allclose(_RESULTS[batch][method], first, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("batch", ENV["batches"])
def test_interleaved_ratios(batch):
    """All methods round-robin, ``rounds`` times after one warm-up call each; the fastest round counts."""
    w = workload(batch)
    fns = {m: METHODS[m](w) for m in _methods() if m != "vmap+triton" or triton_available(w) is None}
    for fn in fns.values():
        fn()
    times = {m: [] for m in fns}
    for _ in range(ENV["rounds"]):
        for m, fn in fns.items():
            times[m].append(timed(fn, w.device))
    _SECONDS[batch] = {m: min(t) for m, t in times.items()}
    _COMPILE[batch] = {m: s for m, fn in fns.items() if (s := compile_seconds(fn)) is not None}
    assert all(s > 0 for s in _SECONDS[batch].values())

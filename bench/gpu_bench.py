"""The GPU benchmark of ``gpu_check.sh``: loop, vmap, compiled, the original-style baseline, the
forward bound and vmap+Triton on one CUDA device, with ratios and MFU.

    python bench/gpu_bench.py --out gpu_check.json            # ResNet-20, 5,128 samples, 167 points
    python bench/gpu_bench.py --dry-run --out /tmp/dry.json   # CPU, tiny sizes: exercises this script

Workload (``workload.py``): ResNet-20 at width 1, the paper's measured sets — 4,000 training,
1,000 held-out and the 128 batch samples — as one set of 5,128 synthetic CIFAR-shaped samples
(the same 41 BatchNorm groups of up to 128, the same forwards), the 167 points of the default
grid, train-mode BatchNorm (the paper's setting). Each
method is prepared, warmed up and then timed once (that run counts); its per-sample losses are
compared with the first method's. The warm-up is a whole cold run for ``vmap`` and ``compiled``
(whose compilation it holds: reported apart as ``compile_seconds``) and a 2-point run of the
same batches for the methods whose per-point work does not depend on K (``loop``, ``baseline``,
``forward_bound``), which saves a minute of GPU time. ``compiled`` is skipped, with the reason
recorded, where no such strategy is registered; a method that fails records its error and the
others still run. Reported: seconds and *sample-point evaluations per second* (``K · N /
seconds``), the ratios engine/baseline, engine/forward-bound, vmap/loop and compiled/loop, each
method's achieved FLOP/s and MFU against a float32 matmul peak timed here (``flops.py``), the
choice ``strategy="auto"`` makes on this device, and the fused token cross-entropy against its
torch reference on language-model logits (64 × 256 positions, V = 50,257, bfloat16). The JSON is
rewritten after every method, so a run cut short by its time limit still leaves what it
measured; ``python bench/report.py gpu_check.json`` prints it as a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from flops import forward_flops_per_sample, matmul_peak, mfu_table  # noqa: E402
from workload import METHODS, Workload, compile_seconds, make_workload, ratios, timed, triton_available  # noqa: E402

from losslines.engine.evaluator import LineEvaluator  # noqa: E402
from losslines.engine.strategies import STRATEGIES  # noqa: E402

# most important first: a run cut short by its budget skips the last ones
DEFAULT_METHODS = ["loop", "vmap", "compiled", "baseline", "forward_bound", "vmap+triton"]
SHORT_WARMUP = {"loop", "baseline", "forward_bound"}  # per-point work independent of K: 2 points warm them up
DRY_RUN = dict(device="cpu", width=0.125, size=8, samples=16, points=3, batch=8)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu_check.json", help="JSON file to write (default: %(default)s)")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--size", type=int, default=32, help="image height = width")
    p.add_argument("--samples", type=int, default=5128, help="4,000 + 1,000 + 128 (default: %(default)s)")
    p.add_argument("--points", type=int, default=167)
    p.add_argument("--batch", type=int, default=128, help="BatchNorm group / DataLoader batch")
    p.add_argument("--device", default="cuda")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated subset of {', '.join(METHODS)} (default: {','.join(DEFAULT_METHODS)})")
    p.add_argument("--budget-s", type=float, default=240.0,
                   help="start no further method after this many seconds (default: %(default)s)")
    p.add_argument("--tests-rc", type=int, default=None, help="exit status of the gpu-marked tests (recorded)")
    p.add_argument("--tests-log", default=None, help="log of the gpu-marked tests (its last line is recorded)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check that the script works")
    args = p.parse_args(argv)
    if args.dry_run:
        for key, value in DRY_RUN.items():
            setattr(args, key, value)
    if args.methods is None:
        args.methods = ",".join(DEFAULT_METHODS)
    else:
        unknown = [m for m in args.methods.split(",") if m not in METHODS]
        if unknown:
            p.error(f"unknown method(s) {unknown}; valid: {', '.join(METHODS)}")
    return args


def why_skipped(name: str, w: Workload) -> str | None:
    """Why method ``name`` cannot run here (None: it can)."""
    if name not in METHODS:
        return f"bench/workload.py has no method {name!r}"
    if name == "compiled" and "compiled" not in STRATEGIES:
        return "no 'compiled' strategy is registered (losslines.engine.strategies.STRATEGIES)"
    if name == "vmap+triton":
        return triton_available(w)
    return None


def run_method(name: str, w: Workload, device: torch.device) -> tuple[dict, object]:
    """Warm ``name`` up, time it once; return its JSON entry and its output (module docstring)."""
    fn = METHODS[name](w)
    result: dict = {}

    def run(fn=fn):
        result["out"] = fn()

    entry: dict = {}
    if name in SHORT_WARMUP and len(w.positions) > 2:
        entry["warmup"] = "2 points"
        entry["warmup_seconds"] = timed(METHODS[name](dataclasses.replace(w, positions=w.positions[:2])), device)
    else:
        entry["warmup"] = "whole run"
        entry["cold_seconds"] = timed(run, device)
    entry["seconds"] = timed(run, device)
    entry["evaluations_per_second"] = w.evaluations / entry["seconds"]
    if (compiling := compile_seconds(fn)) is not None:
        entry["compile_seconds"] = compiling
    return entry, result["out"]


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = None
    else:
        info["cpu"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info


def auto_choice(w: Workload) -> dict:
    """The decision ``strategy="auto"`` makes here (timed on the first BatchNorm group)."""
    ev = LineEvaluator(w.model, w.inputs[: w.batch], w.targets[: w.batch], bn="batch", bn_group=w.batch,
                       strategy="auto", memory_budget=w.memory_budget)
    ev.measure(w.direction, w.positions[: min(len(w.positions), 16)], slope=False)
    return ev.strategy_report.as_attrs()


TOKEN_SHAPE = (64, 256, 50257)  # samples x positions x vocabulary (GPT-2's): 1.6 GB of bf16 logits
TOKEN_SHAPE_DRY = (2, 4, 50)


def token_kernel(device: torch.device, dry_run: bool) -> dict:
    """The fused token cross-entropy against its torch reference on LM-sized logits: seconds,
    tokens per second and the largest per-sample difference (the kernel only runs on CUDA)."""
    from losslines.losses import reduce_loss

    r, t, v = TOKEN_SHAPE_DRY if dry_run else TOKEN_SHAPE
    g = torch.Generator(device=device).manual_seed(0)
    dtype = torch.float32 if dry_run else torch.bfloat16
    logits = (torch.randn(r, t, v, generator=g, device=device) * 3).to(dtype)
    ids = torch.randint(0, v, (r, t), generator=g, device=device)
    ids[:, : t // 8] = -100  # a prompt that is not predicted
    out = {"shape": [r, t, v], "dtype": str(dtype).replace("torch.", ""), "tokens": r * t}
    results = {}
    for backend in ("torch", "triton"):
        if backend == "triton" and device.type != "cuda":
            out[backend] = {"skipped": "the compiled kernel needs CUDA"}
            continue

        def call(backend=backend):
            results[backend] = reduce_loss(logits, ids, loss="token_cross_entropy", lines=1, backend=backend)

        timed(call, device)  # cold: compilation, allocator
        seconds = timed(call, device)
        out[backend] = {"seconds": seconds, "tokens_per_second": r * t / seconds}
    if "triton" in results:
        out["max_abs_diff"] = float((results["triton"].sample_loss - results["torch"].sample_loss).abs().max())
        out["triton/torch speed"] = out["torch"]["seconds"] / out["triton"]["seconds"]
    return out


def guarded(fn, *args) -> dict:
    """``fn(*args)``, or ``{"error": ...}`` if it raises (the figures measured before it are kept)."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001
        return {"error": f"{type(err).__name__}: {err}"[:2000]}


def tests_summary(args) -> dict | None:
    if args.tests_rc is None and args.tests_log is None:
        return None
    out = {"exit_status": args.tests_rc}
    if args.tests_log and Path(args.tests_log).exists():
        lines = [line for line in Path(args.tests_log).read_text().splitlines() if line.strip()]
        out["summary"] = lines[-1] if lines else ""
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU is visible to torch; run on a GPU machine or pass --dry-run", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    w = make_workload(model=args.model, samples=args.samples, points=args.points, batch=args.batch,
                      width=args.width, size=args.size, device=args.device)
    report = {
        "status": "running", "dry_run": args.dry_run, "machine": device_info(device),
        "workload": {"model": args.model, "width": args.width, "input": [3, args.size, args.size],
                     "samples": args.samples, "points": len(w.positions), "batch": args.batch, "bn": "batch",
                     "evaluations": w.evaluations},
        "unit": "sample-point evaluations per second (K * N / seconds of the warm run)",
        "tests": tests_summary(args), "methods": {}, "ratios": {}, "mfu": {}, "auto": None,
    }
    flops_per_sample = forward_flops_per_sample(w.model, w.inputs[: w.batch])
    peak = matmul_peak(device)
    report["flops"] = {"counted_with": "torch.utils.flop_counter.FlopCounterMode, one forward of a BatchNorm group",
                       "per_sample_forward": flops_per_sample, "matmul_peak": peak}

    def write() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))

    write()
    seconds, reference = {}, None
    for name in args.methods.split(","):
        report["methods"][name] = {}
        if time.perf_counter() - t_start > args.budget_s:
            report["methods"][name] = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
            write()
            continue
        if (why := why_skipped(name, w)) is not None:
            report["methods"][name] = {"skipped": why}
            write()
            continue
        try:
            entry, out = run_method(name, w, device)
        except Exception as err:  # noqa: BLE001 - one failing method must not cost the others' GPU time
            report["methods"][name] = {"error": f"{type(err).__name__}: {err}"[:2000]}
            print(f"{name:>14}: failed: {type(err).__name__}: {err}"[:500], file=sys.stderr, flush=True)
            write()
            continue
        report["methods"][name] = entry
        seconds[name] = entry["seconds"]
        if name != "forward_bound":
            losses = out if isinstance(out, np.ndarray) else out.sample_loss
            if reference is None:
                reference = losses
            entry["max_abs_diff_vs_first"] = float(np.abs(losses.astype(np.float64) - reference).max())
        report["ratios"] = ratios(seconds)
        report["mfu"] = mfu_table(seconds, evaluations=w.evaluations, flops_per_sample=flops_per_sample,
                                  peak_flops_per_second=peak["flops_per_second"])
        print(f"{name:>14}: {entry['seconds']:8.3f} s  {entry['evaluations_per_second']:12.0f} evals/s", flush=True)
        write()
    report["auto"] = guarded(auto_choice, w)
    write()
    if time.perf_counter() - t_start < args.budget_s:
        report["token_cross_entropy"] = guarded(token_kernel, device, args.dry_run)
    else:
        report["token_cross_entropy"] = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
    report["seconds_total"] = time.perf_counter() - t_start
    report["status"] = "complete"
    write()
    print(json.dumps({"ratios": report["ratios"], "mfu": {m: v["mfu"] for m, v in report["mfu"].items()},
                      "auto": report["auto"],
                      "token_cross_entropy": report["token_cross_entropy"]}, indent=2))
    print(f"written to {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

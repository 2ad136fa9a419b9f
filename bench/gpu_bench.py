"""The GPU benchmark of ``gpu_check.sh``: loop vs vmap vs vmap+Triton on one CUDA device.

    python bench/gpu_bench.py --out gpu_check.json            # ResNet-20, 4,000 samples, 167 points
    python bench/gpu_bench.py --dry-run --out /tmp/dry.json   # CPU, tiny sizes: exercises this script

Workload (``workload.py``): ResNet-20 at width 1, 4,000 synthetic CIFAR-shaped samples, the 167
points of the default grid, train-mode BatchNorm over groups of 128 (the paper's setting). Each
method is prepared, run once cold and once warm (the warm run counts), and its per-sample losses
are compared with the loop's. Reported: seconds and *sample-point evaluations per second*
(``K · N / seconds``), the ratios engine/baseline, engine/forward-bound and vmap/loop, the
choice ``strategy="auto"`` makes on this device, and the fused token cross-entropy against its
torch reference on language-model logits (64 × 256 positions, V = 50,257, bfloat16). The JSON is rewritten after every method, so a
run cut short by its time limit still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from workload import METHODS, Workload, make_workload, ratios, timed, triton_available  # noqa: E402

from losslines.engine.evaluator import LineEvaluator  # noqa: E402

DEFAULT_METHODS = ["loop", "vmap", "vmap+triton", "forward_bound", "baseline"]
DRY_RUN = dict(device="cpu", width=0.125, size=8, samples=16, points=3, batch=8)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu_check.json", help="JSON file to write (default: %(default)s)")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--size", type=int, default=32, help="image height = width")
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--points", type=int, default=167)
    p.add_argument("--batch", type=int, default=128, help="BatchNorm group / DataLoader batch")
    p.add_argument("--device", default="cuda")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated subset of {', '.join(METHODS)}")
    p.add_argument("--budget-s", type=float, default=240.0,
                   help="start no further method after this many seconds (default: %(default)s)")
    p.add_argument("--tests-rc", type=int, default=None, help="exit status of the gpu-marked tests (recorded)")
    p.add_argument("--tests-log", default=None, help="log of the gpu-marked tests (its last line is recorded)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check that the script works")
    args = p.parse_args(argv)
    if args.dry_run:
        for key, value in DRY_RUN.items():
            setattr(args, key, value)
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; valid: {', '.join(METHODS)}")
    return args


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
        "tests": tests_summary(args), "methods": {}, "ratios": {}, "auto": None,
    }

    def write() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))

    write()
    seconds, reference = {}, None
    for name in args.methods.split(","):
        entry = report["methods"][name] = {}
        if time.perf_counter() - t_start > args.budget_s:
            entry["skipped"] = f"time budget of {args.budget_s:.0f} s spent"
            write()
            continue
        if name == "vmap+triton" and (why := triton_available(w)) is not None:
            entry["skipped"] = why
            write()
            continue
        fn = METHODS[name](w)
        result = {}

        def run(fn=fn, result=result):
            result["out"] = fn()

        entry["cold_seconds"] = timed(run, device)
        entry["seconds"] = timed(run, device)
        entry["evaluations_per_second"] = w.evaluations / entry["seconds"]
        seconds[name] = entry["seconds"]
        out = result["out"]
        if name != "forward_bound":
            losses = out if isinstance(out, np.ndarray) else out.sample_loss
            if reference is None:
                reference = losses
            entry["max_abs_diff_vs_first"] = float(np.abs(losses.astype(np.float64) - reference).max())
        report["ratios"] = ratios(seconds)
        print(f"{name:>14}: {entry['seconds']:8.3f} s  {entry['evaluations_per_second']:12.0f} evals/s", flush=True)
        write()
    report["auto"] = auto_choice(w)
    write()
    if time.perf_counter() - t_start < args.budget_s:
        report["token_cross_entropy"] = token_kernel(device, args.dry_run)
    else:
        report["token_cross_entropy"] = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
    report["seconds_total"] = time.perf_counter() - t_start
    report["status"] = "complete"
    write()
    print(json.dumps({"ratios": report["ratios"], "auto": report["auto"],
                      "token_cross_entropy": report["token_cross_entropy"]}, indent=2))
    print(f"written to {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of the two ways to use several processes, against one process, in one run.

    python bench/scale_out.py [--config configs/quickstart.toml] [--processes 2] [--steps 150]

Runs the config (shortened to ``--steps`` training steps) as the CLI does, in fresh processes:

* ``inline x1``: ``losslines run`` in one process (``threads`` = all the cores);
* ``sharded xN``: ``torchrun --nproc_per_node=N -m losslines run`` (measurement sets sharded);
* ``record`` + ``measure x1``: ``measure.mode = 'record'``, then ``losslines measure`` in one process;
* ``measure xN``: the same recording measured line-parallel by N processes.

Every store is compared with the inline one: with the same thread count they are equal bit for
bit (tests/runner/test_distributed.py); here the thread counts differ (N processes x cores/N
threads), which reorders float32 sums inside the convolutions, so the last bits may differ —
the script reports by how much and fails beyond float16 rounding of the per-sample losses.

With N processes each uses ``cores / N`` threads, so every row uses the whole machine. Prints a
table and writes ``bench/results/scale_out_<device>_<date>.json``. Wall times include each
process's start (imports, dataset): what a user waits for.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _cli(args: list[str], processes: int, threads: int) -> float:
    entry = ["-m", "losslines", *args, "-q"]
    cmd = [sys.executable, *entry] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *entry]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/quickstart.toml")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    from losslines.store import open_store

    n, cores = args.processes, args.cores
    per = max(1, cores // n)
    tmp = Path(tempfile.mkdtemp(prefix="losslines-scale-"))

    def run_args(out: str, *extra: str, threads: int) -> list[str]:
        return ["run", args.config, "--out", str(tmp / out), "--set", f"train.steps={args.steps}",
                "--set", f"threads={threads}", *extra]

    rows = {}
    rows["inline x1"] = _cli(run_args("inline.zarr", threads=cores), 1, cores)
    rows[f"sharded x{n}"] = _cli(run_args("sharded.zarr", threads=per), n, per)
    rows["record"] = _cli(run_args("rec.zarr", "--set", "measure.mode='record'", threads=cores), 1, cores)
    rows["measure x1"] = _cli(["measure", str(tmp / "rec.zarr"), "--out", str(tmp / "measured1.zarr"),
                               "--threads", str(cores)], 1, cores)
    rows[f"measure x{n}"] = _cli(["measure", str(tmp / "rec.zarr"), "--out", str(tmp / f"measured{n}.zarr"),
                                  "--threads", str(per)], n, per)

    ref = open_store(tmp / "inline.zarr")
    lines = ref.committed_lines
    deviation = {}
    for name in ("sharded.zarr", "measured1.zarr", f"measured{n}.zarr"):
        other = open_store(tmp / name)
        assert other.committed_lines == lines, name
        x, y = other["sample_loss_train"][...].astype(np.float64), ref["sample_loss_train"][...].astype(np.float64)
        u, v = other["loss_train"][...], ref["loss_train"][...]
        assert np.array_equal(np.isnan(x), np.isnan(y)) and np.array_equal(np.isnan(u), np.isnan(v)), name
        deviation[name] = {"sample_loss_train_max_rel": float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(y), 1e-30))),
                           "sample_loss_train_unequal_fraction": float(np.mean((x != y) & ~np.isnan(y))),
                           "loss_train_max_rel": float(np.nanmax(np.abs(u - v) / np.abs(v)))}
    sizes = {name: sum(f.stat().st_size for f in (tmp / name).rglob("*") if f.is_file())
             for name in ("inline.zarr", "rec.zarr")}

    base = rows["inline x1"]
    print(f"{args.config}, {args.steps} steps, {lines} lines, {cores} cores; {n} processes x {per} thread(s)")
    for name, wall in rows.items():
        print(f"  {name:<14} {wall:7.1f} s   {lines / wall:6.3f} lines/s   {base / wall:5.2f}x inline x1")
    pipeline = rows["record"] + rows[f"measure x{n}"]
    print(f"  record + measure x{n}: {pipeline:.1f} s ({base / pipeline:.2f}x inline x1); recording "
          f"{sizes['rec.zarr'] / 2**20:.1f} MiB vs store {sizes['inline.zarr'] / 2**20:.1f} MiB")

    for name, d in deviation.items():  # other thread counts reorder float32 sums: last bits only
        print(f"  {name}: loss_train within {d['loss_train_max_rel']:.1e} rel.; "
              f"{d['sample_loss_train_unequal_fraction']:.4%} of the per-sample losses differ, by at most "
              f"{d['sample_loss_train_max_rel']:.1e} rel.")
        assert d["loss_train_max_rel"] < 1e-5 and d["sample_loss_train_max_rel"] < 2e-3, name
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = ROOT / "bench" / "results" / f"scale_out_{device}_{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "config": args.config, "steps": args.steps, "lines": lines, "cores": cores, "processes": n,
        "threads_per_process": per, "wall_s": rows, "speedup_vs_inline_x1": {k: base / v for k, v in rows.items()},
        "record_plus_measure_s": pipeline, "bytes": sizes, "torch": torch.__version__,
        "deviation_from_inline_x1": deviation,
    }, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""Memory stays bounded: analysing >= 2 GB of per-sample losses peaks under 1 GB RSS.

The store is written with the real StoreWriter (highly compressible values, so it is quick to
write); the analysis runs in a fresh subprocess and reports its own peak RSS (VmHWM).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from losslines.store import StoreLayout, StoreWriter

GRID = np.round(np.arange(-83, 84) * 0.006, 12)
# The child's own peak: VmHWM of its address space. Not ru_maxrss, which Linux keeps across
# execve, so a child of a big parent (a pytest process that imported torch, Lightning and
# transformers) reported the parent's RSS at the fork (regression: 1,079 MiB in CI, 623 alone).
CHILD = """
import json, resource, sys
from losslines.analysis.analyze import analyze_store
from losslines.analysis.results import AnalysisOptions
rep = analyze_store(sys.argv[1], sys.argv[2], options=AnalysisOptions(formats=("png",), n_draws=4))
gap = rep.result.per_line["sample_mean_gap_train"]
try:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    peak = int(hwm.split()[1]) / 1024
except (OSError, IndexError):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_rss_mib": peak,
                  "lines": int(rep.result.lines.size), "gaps": int(gap.size), "max_gap": float(gap.max()),
                  "slopes": list(rep.result.batch_study.slopes.shape)}))
"""


@pytest.mark.slow
def test_peak_rss_stays_under_1gb_on_2gb_of_per_sample_losses(tmp_path):
    n_lines, n_train, batch = 200, 32768, 128
    logical = n_lines * GRID.size * (n_train + batch) * 2
    assert logical >= 2e9
    layout = StoreLayout(n_points=GRID.size, n_train=n_train, batch_size=batch, sample_losses=("train", "batch"),
                         sample_dtype="float16", line_chunk=64, sample_block=8192)
    a = np.tile(np.linspace(0.5, 2.0, 64), n_train // 64)
    per_train = (a * (GRID[:, None] - 0.1) ** 2 + 1.0).astype(np.float16)  # [K, N]
    per_batch = (2.0 * GRID[:, None] ** 2 - GRID[:, None] + np.linspace(1, 2, batch)).astype(np.float16)
    loss_train = per_train.astype(np.float64).mean(1)
    path = tmp_path / "big.zarr"
    with StoreWriter.create(path, layout, positions=GRID, sample_ids={"train": np.arange(n_train)}, attrs={},
                            capacity=n_lines, max_queued_lines=2) as w:
        for t in range(n_lines):
            w.append({"step": t, "lr": 0.1, "direction_norm": 1.0, "update_step": 0.1, "loss_train": loss_train,
                      "loss_batch": per_batch.astype(np.float64).mean(1), "sample_loss_train": per_train,
                      "sample_loss_batch": per_batch, "batch_ids": np.arange(batch)})
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp_path / "report")],
                          capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["lines"] == out["gaps"] == n_lines  # every line's per-sample block was read
    assert out["max_gap"] < 1e-3  # and the values are the ones written
    assert out["slopes"][0] == n_lines
    assert out["peak_rss_mib"] < 1024, out
    print(f"\npeak RSS {out['peak_rss_mib']:.0f} MiB for {logical / 2**30:.2f} GiB of per-sample losses")

"""A long run with the default store and checkpoint policy, watched from another process:

* the reader (this process) opens the store over and over while a child process writes it
  (≥ 1,000 reads): no read errors, never a line past ``committed_lines``, never a partly written
  line (every committed line has its step, its losses and per-sample losses at s = 0), and
  ``committed_lines`` never goes back;
* the writer's resident memory is flat after warm-up (≥ 500 lines): the slope of RSS against
  committed lines, fitted past the first 100 lines, stays under a bound a leak of one line's
  data per line would exceed.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest

from losslines.runner.config import config_to_dict
from losslines.store.reader import open_store

LINES = 520
READS = 1000
WARMUP_LINES = 100
MAX_SLOPE_KIB_PER_LINE = 8.0  # (an injected leak of 16 KiB per line measured 17.4 KiB/line, a clean run 1.0)


def _launch(config_path: str) -> None:
    from losslines.cli import main

    os._exit(main(["-q", "run", config_path]))


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the writer's RSS from /proc")
def test_readers_during_a_long_run_see_only_committed_lines_and_the_writer_memory_is_flat(
        tmp_path, tiny_config, toml_dumps):
    cfg = tiny_config(tmp_path, f"train.steps={LINES}", "train.batch_size=8", "train.checkpoint_every=0",
                      "data.options.n_samples=56", "data.n_val=8", "measure.every=1", "measure.spacing=0.1",
                      "measure.half_width=0.2", 'measure.sample_losses=["train"]', "threads=1")
    config_path = tmp_path / "long.toml"
    config_path.write_text(toml_dumps(config_to_dict(cfg)))
    store_path = Path(cfg.store.path)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "losslines.cli", "losslines.runner.driver"])
    child = ctx.Process(target=_launch, args=(str(config_path),))
    child.start()

    reads, last, samples, zero = 0, 0, [], None
    store = None
    while child.is_alive() or reads == 0:
        if store is None:
            if not (store_path / "zarr.json").exists():
                time.sleep(0.01)
                continue
            try:
                store = open_store(store_path)
            except ValueError:  # created but its format attribute not written yet: not a store yet
                time.sleep(0.01)
                continue
            zero = int(np.flatnonzero(store.position == 0.0)[0])
        store.refresh()
        n = store.committed_lines
        assert n >= last, f"committed_lines went back from {last} to {n}"
        steps = store["step"].read()
        assert steps.shape == (n,) and (steps >= 0).all() and np.array_equal(steps, np.arange(n))
        if n:
            i = int(np.random.default_rng(reads).integers(n))  # one committed line, whole
            assert np.isfinite(store["loss_train"][i, zero]) and np.isfinite(store["loss_val"][i, zero])
            assert np.isfinite(store["sample_loss_train"][i, zero, :]).all()
            assert np.isfinite(store["sample_slope0_train"][i, :]).all()
        reads += 1
        last = n
        rss = _rss_kib(child.pid)
        if rss is not None and child.is_alive():
            samples.append((n, rss))
    child.join()
    assert child.exitcode == 0
    final = open_store(store_path)
    assert (final.status, final.committed_lines) == ("complete", LINES)
    assert reads >= READS, f"only {reads} reads happened during the run"

    lines, rss = np.array(samples, dtype=np.float64).T
    late = lines >= WARMUP_LINES
    assert np.ptp(lines[late]) >= 400, "too few RSS samples after warm-up"
    slope = np.polyfit(lines[late], rss[late], 1)[0]
    print(f"{reads} reads during the run; writer RSS {rss[late].min() / 1024:.0f}-{rss[late].max() / 1024:.0f} MiB "
          f"after {WARMUP_LINES} lines, slope {slope:.2f} KiB/line over {int(np.ptp(lines[late]))} lines")
    assert slope < MAX_SLOPE_KIB_PER_LINE, f"writer RSS grows {slope:.1f} KiB per line"

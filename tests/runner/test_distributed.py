"""Runs of several processes under torchrun (gloo on CPU, loopback only, bounded in time).

The measurement sets are sharded over the processes; training is replicated, so a run of two
processes holds the same θ_t as a run of one, and its store must equal the one-process store: the
per-sample arrays bit for bit, the line means to 1e-12 relative. A process killed mid-run fails the
run cleanly; the store stays readable up to its committed lines, and ``--resume`` with one process
completes it to the same result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from losslines.runner.checkpoint import checkpoint_dir, load_checkpoint
from losslines.runner.config import config_to_dict, load_config
from losslines.runner.driver import run
from losslines.runner.distributed import plan_shards
from losslines.store import open_store
from losslines.store.location import location

TIMEOUT = 240
LINE_LEVEL = ("loss_train", "loss_val", "loss_batch", "acc_train", "acc_val", "loss_at_update_train", "slope0_train",
              "slope0_val", "slope0_batch")


def write_config(tmp_path, tiny_config, toml_dumps, *overrides) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(toml_dumps(config_to_dict(tiny_config(tmp_path, "threads=1", *overrides, name="cfg"))))
    return path


def losslines(args, *, processes: int, env=None, wait=True, script: Path | None = None):
    """``python -m losslines ARGS`` in one process, or under torchrun in ``processes``; ``script``
    replaces ``-m losslines`` (a wrapper that changes one process before it runs the CLI)."""
    entry = [str(script)] if script else ["-m", "losslines"]
    cmd = [sys.executable, *entry, *args]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               *entry, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOSSLINES_DIST_TIMEOUT": "60", **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)


def assert_same_store(a, b) -> None:
    assert a.committed_lines == b.committed_lines
    for name in a.names:
        x, y = a[name][...], b[name][...]
        if name in LINE_LEVEL:
            np.testing.assert_allclose(y, x, rtol=1e-12, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(y, x, err_msg=name)


SLOW_RANK_1 = """
import os, sys, time
import losslines.runner.driver as driver
from losslines.cli import main

if os.environ["RANK"] == "1":  # process 1 reaches the store only after process 0 has created it
    build_parts = driver.build_parts
    def slow_build_parts(*args, **kwargs):
        parts = build_parts(*args, **kwargs)
        time.sleep(3)
        return parts
    driver.build_parts = slow_build_parts
sys.exit(main())
"""


def test_shards_are_whole_groups_as_even_as_possible():
    assert plan_shards(96, 2, 16) == [(0, 48), (48, 96)]
    assert plan_shards(24, 2, 16) == [(0, 16), (16, 24)]  # the last group is short
    assert plan_shards(100, 3, 1) == [(0, 33), (33, 66), (66, 100)]
    with pytest.raises(ValueError, match="2 group\\(s\\) for 3 processes"):
        plan_shards(20, 3, 16)


@pytest.mark.slow
def test_two_processes_write_the_store_of_one(tmp_path, tiny_config, toml_dumps):
    cfg = write_config(tmp_path, tiny_config, toml_dumps, "measure.per_step=true", "measure.directions_at=[2, 7]",
                       "measure.n_directions=3")
    one = losslines(["run", str(cfg), "--out", str(tmp_path / "one.zarr"), "-q"], processes=1)
    assert one.returncode == 0, one.stderr
    # process 1 starts late (SLOW_RANK_1): regression for a store sink built in every process, where
    # a process that came after process 0 had created the store found the path taken (seen in CI)
    script = tmp_path / "slow_rank_1.py"
    script.write_text(SLOW_RANK_1)
    two = losslines(["run", str(cfg), "--out", str(tmp_path / "two.zarr"), "-q"], processes=2, script=script)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("complete:") == 1  # process 0 reports
    a, b = open_store(tmp_path / "one.zarr"), open_store(tmp_path / "two.zarr")
    assert b.status == "complete"
    for x, y in ((a, b), (a.directions, b.directions), (a.steps, b.steps)):
        assert_same_store(x, y)


@pytest.fixture(scope="module")
def whole_60(tmp_path_factory, tiny_config, toml_dumps):
    """A 60-step one-process run (the reference of the interrupted runs below) and its config."""
    tmp = tmp_path_factory.mktemp("whole")
    cfg = write_config(tmp, tiny_config, toml_dumps, "train.steps=60", "train.checkpoint_every=6")
    whole = losslines(["run", str(cfg), "--out", str(tmp / "whole.zarr"), "-q"], processes=1)
    assert whole.returncode == 0, whole.stderr
    return cfg, open_store(tmp / "whole.zarr")


def _pid_of_rank(token: str, rank: int, timeout: float = 60.0) -> int:
    """The process of ``rank`` among the workers whose environment holds ``token``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"LOSSLINES_TEST_TOKEN={token}".encode() in env and f"RANK={rank}".encode() in env \
                    and b"LOCAL_RANK=" + str(rank).encode() in env:
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError(f"no worker process of rank {rank} found")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker through /proc")
def test_a_killed_process_fails_the_run_cleanly_and_one_process_resumes_it(tmp_path, whole_60):
    cfg, whole = whole_60

    out = tmp_path / "killed.zarr"
    token = uuid.uuid4().hex
    proc = losslines(["run", str(cfg), "--out", str(out), "-q"], processes=2, wait=False,
                     env={"LOSSLINES_TEST_TOKEN": token})
    victim = _pid_of_rank(token, 1)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:  # a checkpoint and a few committed lines, then kill process 1
        if (tmp_path / "killed.zarr.ckpt" / "latest.pt").exists() and out.exists():
            try:
                if open_store(out).committed_lines >= 2:
                    break
            except (ValueError, FileNotFoundError):
                pass
        time.sleep(0.05)
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode != 0
    store = open_store(out)  # readable up to its committed lines
    n = store.committed_lines
    assert 2 <= n < 30 and np.isfinite(store["loss_train"][...]).all()
    np.testing.assert_array_equal(store["sample_loss_train"][...], whole["sample_loss_train"][:n])

    resumed = losslines(["run", str(cfg), "--out", str(out), "-q", "--resume"], processes=1)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_store(whole, open_store(out))


@pytest.mark.slow
def test_two_processes_measure_a_recording_line_parallel_as_the_inline_run(tmp_path, tiny_config, toml_dumps):
    cfg = write_config(tmp_path, tiny_config, toml_dumps, "train.steps=14")  # 7 lines: one process gets one more
    run(load_config(cfg, [f"store.path='{tmp_path / 'inline.zarr'}'"]), progress=False)  # in this process
    run(load_config(cfg, [f"store.path='{tmp_path / 'rec.zarr'}'", "measure.mode='record'"]), progress=False)
    two = losslines(["measure", str(tmp_path / "rec.zarr"), "--out", str(tmp_path / "two.zarr"), "-q"], processes=2)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("complete: 7 lines") == 1  # process 0 reports
    a, b = open_store(tmp_path / "inline.zarr"), open_store(tmp_path / "two.zarr")
    assert b.status == "complete" and b.committed_lines == 7
    for name in a.names:
        np.testing.assert_array_equal(b[name][...], a[name][...], err_msg=name)


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_process_with_a_checkpoint_and_resume_completes_it(tmp_path, whole_60):
    # what a scheduler does before preempting: SIGTERM to the launcher, which passes it on
    cfg, whole = whole_60
    out = tmp_path / "stopped.zarr"
    proc = losslines(["run", str(cfg), "--out", str(out), "-q"], processes=2, wait=False)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:  # a few committed lines, then preempt
        try:
            if out.exists() and open_store(out).committed_lines >= 2:
                break
        except (ValueError, FileNotFoundError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode != 0
    stopped = open_store(out)
    assert stopped.status == "failed" and "interrupted by SIGTERM" in stopped.attrs["status_reason"], err
    stop = int(stopped.attrs["status_reason"].split("before step ")[1].split(";")[0])
    assert load_checkpoint(checkpoint_dir(location(out))).step == stop  # the stop's checkpoint, not a periodic one
    resumed = losslines(["run", str(cfg), "--out", str(out), "-q", "--resume"], processes=2)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_store(whole, open_store(out))

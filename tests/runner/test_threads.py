"""``threads`` (runner.threads): 0 = OMP_NUM_THREADS, else the cores this process may use; the
choice is applied, logged, stored in the ``runtime`` attribute and left out of store comparisons."""

from __future__ import annotations

import logging

import pytest
import torch

from losslines.runner.driver import run
from losslines.runner.threads import ThreadChoice, apply_threads, cpu_quota, resolve_threads
from losslines.store import open_store
from losslines.store.compare import VOLATILE_ATTRS

CASES = [  # requested, environ, cpus allowed, cgroup quota -> threads, source
    (3, {"OMP_NUM_THREADS": "1"}, 8, 2, 3, "config"),
    (0, {"OMP_NUM_THREADS": "1"}, 8, None, 1, "OMP_NUM_THREADS"),
    (0, {"OMP_NUM_THREADS": " 4 "}, 2, None, 4, "OMP_NUM_THREADS"),
    (0, {"OMP_NUM_THREADS": "junk"}, 6, None, 6, "affinity"),
    (0, {"OMP_NUM_THREADS": "0"}, 6, None, 6, "affinity"),
    (0, {}, 2, None, 2, "affinity"),
    (0, {}, 64, 4, 4, "cgroup quota"),
    (0, {}, 2, 8, 2, "affinity"),
    (0, {"LOCAL_WORLD_SIZE": "4"}, 16, None, 4, "affinity / LOCAL_WORLD_SIZE"),
    (0, {"LOCAL_WORLD_SIZE": "4"}, 2, None, 1, "affinity / LOCAL_WORLD_SIZE"),
    (0, {"LOCAL_WORLD_SIZE": "2"}, 64, 6, 3, "cgroup quota / LOCAL_WORLD_SIZE"),
]


@pytest.mark.parametrize("requested, environ, allowed, quota, threads, source", CASES)
def test_resolve_threads(requested, environ, allowed, quota, threads, source):
    assert resolve_threads(requested, environ, allowed, quota) == ThreadChoice(threads, source, allowed)


@pytest.mark.parametrize("text, cpus", [("max 100000", None), ("150000 100000", 2), ("100000 100000", 1),
                                        ("1000 100000", 1), ("garbage", None), ("", None)])
def test_cpu_quota_reads_cgroup_v2_cpu_max(tmp_path, text, cpus):
    (tmp_path / "cpu.max").write_text(text + "\n")
    assert cpu_quota(tmp_path / "cpu.max") == cpus
    assert cpu_quota(tmp_path / "absent") is None


def test_apply_threads_sets_torch(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert apply_threads(0).threads == 2 and torch.get_num_threads() == 2
    assert apply_threads(1) == ThreadChoice(1, "config", apply_threads(1).cpus_allowed)
    assert torch.get_num_threads() == 1


def test_a_run_logs_and_stores_its_threads_and_writer_stall(tmp_path, tiny_config, caplog):
    cfg = tiny_config(tmp_path, "train.steps=4")  # threads = 0; the autouse fixture sets OMP_NUM_THREADS=1
    with caplog.at_level(logging.INFO, logger="losslines"):
        result = run(cfg, progress=False)
    assert "torch uses 1 CPU thread (from OMP_NUM_THREADS" in caplog.text
    assert result.threads.threads == 1 and result.threads.source == "OMP_NUM_THREADS"
    stall = result.writer_stall
    assert stall.lines == result.lines == 2 and 0 < stall.caller_s < stall.open_s <= result.wall_s
    attrs = open_store(cfg.store_path).attrs
    assert attrs["runtime"] == {"threads": 1, "threads_from": "OMP_NUM_THREADS",
                                "cpus_allowed": result.threads.cpus_allowed}
    assert attrs["writer_stall"]["lines"] == 2 and attrs["config"]["threads"] == 0
    assert {"runtime", "writer_stall"} <= set(VOLATILE_ATTRS)  # machine and timing, not what was measured

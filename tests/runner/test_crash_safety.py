"""Crash safety of the default config: a run killed with SIGKILL at any moment resumes with
``--resume`` and ends bit-identical to an uninterrupted run, losing at most the line in flight.

The runs are child processes forked from a forkserver that imported torch and losslines once (a
fresh interpreter per run would cost seconds of imports each); each is killed with SIGKILL at a
seeded random moment of its run, then the next one resumes (or starts, when the store does not
exist yet), until the store is complete; then a new sequence starts, until 20 kills happened.
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from losslines.runner.checkpoint import checkpoint_dir, load_checkpoint
from losslines.runner.config import config_to_dict
from losslines.store.compare import VOLATILE_ATTRS, diff_stores
from losslines.store.reader import open_store

KILLS = 20
IGNORED = VOLATILE_ATTRS + ("strategy_report",)  # strategy_report holds timings


def _launch(config_path: str, resume: bool) -> None:
    import os

    from losslines.cli import main

    argv = ["-q", "run", config_path] + (["--resume"] if resume else [])
    os._exit(main(argv))  # no atexit handlers of the forkserver's modules


@pytest.fixture(scope="module")
def forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "losslines.cli", "losslines.runner.driver", "zarr"])
    warm = ctx.Process(target=_nothing)  # starts the server (its imports) outside the timed runs
    warm.start()
    warm.join()
    return ctx


def _nothing() -> None:
    pass


def _config(tmp: Path, tiny_config, toml_dumps, name: str) -> Path:
    # the tiny run with every kind of group (directions/, steps/) and the default checkpoint policy
    cfg = tiny_config(tmp, "train.steps=16", "measure.n_directions=2", "measure.directions_at=[4]",
                      "measure.per_step=true", "train.checkpoint_every=0", name=name)
    table = config_to_dict(cfg)
    assert table["train"]["checkpoint_lines"] is True and table["store"]["commit_every"] == 1  # the defaults
    path = tmp / f"{name}.toml"
    path.write_text(toml_dumps(table))
    return path


@pytest.mark.slow
def test_twenty_sigkills_at_random_moments_each_resume_to_the_uninterrupted_store(
        tmp_path, tiny_config, toml_dumps, forkserver):
    cfg = _config(tmp_path, tiny_config, toml_dumps, "run")  # every run writes run.zarr (the path is in the attributes)
    store = tmp_path / "run.zarr"
    t0 = time.monotonic()
    child = forkserver.Process(target=_launch, args=(str(cfg), False))
    child.start()
    child.join(120)
    duration = time.monotonic() - t0
    assert child.exitcode == 0
    reference = tmp_path / "reference.zarr"
    store.rename(reference)
    shutil.rmtree(tmp_path / "run.zarr.ckpt")
    assert open_store(reference).status == "complete"

    rng = np.random.default_rng(20261201)
    kills, sequences, lost = 0, 0, []
    while kills < KILLS:
        sequences += 1
        while True:
            child = forkserver.Process(target=_launch, args=(str(cfg), store.exists()))
            child.start()
            child.join(rng.uniform(0.0, duration))
            if child.exitcode is None:  # still running: kill it where it stands
                child.kill()
                child.join()
                kills += 1
                lost.append(_lines_lost(store))
                continue
            assert child.exitcode == 0, f"a resume failed after {kills} kills (exit {child.exitcode})"
            break
        assert diff_stores(reference, store, ignore_attrs=IGNORED) == [], f"sequence {sequences}"
        assert open_store(store).status == "complete"
        shutil.rmtree(store)
        shutil.rmtree(tmp_path / "run.zarr.ckpt")
    assert max(lost) <= 1, lost  # at most the line in flight
    print(f"{kills} kills in {sequences} sequences, every sequence bit-identical to the reference "
          f"(one uninterrupted run: {duration:.1f} s); committed lines a resume measures again: {lost}")


def _lines_lost(store: Path) -> int:
    """Committed lines past the checkpoint a resume starts from (they are measured again)."""
    ckpt = checkpoint_dir(store)
    if not (store / "zarr.json").exists() or not (ckpt.path / "latest.pt").exists():
        return 0  # killed before the store or its first checkpoint existed: nothing measured
    committed = zarr.open_group(str(store), mode="r", use_consolidated=False).attrs.get("committed_lines", 0)
    return int(committed) - load_checkpoint(ckpt).committed_lines

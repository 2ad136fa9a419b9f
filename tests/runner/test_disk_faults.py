"""Disk and filesystem faults during a run with the default config: a full disk or an I/O error
while the store is written (injected through a zarr store wrapper), an output that cannot be
written, a store folder deleted mid-run. Each ends in one line on stderr and a non-zero exit;
the committed lines stay readable; where the store can still be written its status is
``failed`` with the reason; after the fault a ``--resume`` completes the store bit-identical to
an uninterrupted run."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from zarr.storage import WrapperStore

from losslines.cli import main
from losslines.runner.config import config_to_dict
from losslines.store.compare import VOLATILE_ATTRS, diff_stores
from losslines.store.location import Location
from losslines.store.reader import open_store

IGNORED = VOLATILE_ATTRS + ("strategy_report", "config.store.path")


class FaultyStore(WrapperStore):
    """Passes everything through, except that writes fail with ``error`` once ``after`` writes
    went through: every later write (``persistent``: a full disk) or only the next one (an I/O
    error)."""

    after = 0
    error = errno.ENOSPC
    persistent = True
    writes = 0
    failures = 0

    async def set(self, key, value):  # noqa: D102 - zarr's Store API
        cls = type(self)
        cls.writes += 1
        if cls.writes > cls.after and (cls.persistent or cls.failures == 0):
            cls.failures += 1
            raise OSError(cls.error, f"{errno.errorcode[cls.error]} (injected) writing {key}")
        return await self._store.set(key, value)


@pytest.fixture
def faulty(monkeypatch):
    """Route the zarr access of every store through ``FaultyStore`` (armed per test)."""
    original = Location.zarr_store

    def wrapped(self, read_only: bool = False):
        return FaultyStore(original(self, read_only=read_only))

    FaultyStore.writes = FaultyStore.failures = 0
    FaultyStore.after = 10**9
    monkeypatch.setattr(Location, "zarr_store", wrapped)
    monkeypatch.setattr(FaultyStore, "after", 10**9)
    return FaultyStore


@pytest.fixture
def reference(tmp_path_factory, tiny_config, toml_dumps, one_torch_thread):
    """The uninterrupted run, on the one torch thread the test's runs get (autouse fixture): a
    module-scoped fixture ran before it, with torch's default threads, and differed in the last bits."""
    tmp = tmp_path_factory.mktemp("faults")
    cfg = _config(tmp, tiny_config, toml_dumps)
    assert main(["-q", "run", str(cfg)]) == 0
    done = tmp / "reference.zarr"
    (tmp / "run.zarr").rename(done)
    shutil.rmtree(tmp / "run.zarr.ckpt")
    return done


def _config(tmp: Path, tiny_config, toml_dumps) -> Path:
    cfg = tiny_config(tmp, "train.checkpoint_every=0", "train.steps=10", name="run")
    path = tmp / "run.toml"
    path.write_text(toml_dumps(config_to_dict(cfg)))
    return path


@pytest.mark.parametrize("error, persistent", [(errno.ENOSPC, True), (errno.EIO, False)],
                         ids=["disk full", "one I/O error"])
def test_a_write_fault_ends_in_one_line_keeps_the_lines_and_resume_completes(
        error, persistent, faulty, reference, tmp_path, tiny_config, toml_dumps, capsys):
    cfg = _config(tmp_path, tiny_config, toml_dumps)
    store = tmp_path / "run.zarr"
    faulty.writes = faulty.failures = 0  # (the reference's writes went through it too)
    faulty.after, faulty.error, faulty.persistent = 150, error, persistent  # a few lines in
    assert main(["-q", "run", str(cfg)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("losslines: storage error:") and errno.errorcode[error] in err and "--resume" in err
    assert faulty.failures >= 1
    faulty.after = 10**9  # the fault is over (space freed, disk back)
    stopped = open_store(store)
    assert stopped.committed_lines >= 1 and stopped["loss_train"].read().shape[0] == stopped.committed_lines
    if persistent:  # nothing could be written any more, the status included
        assert stopped.status == "running"
    else:
        assert stopped.status == "failed" and errno.errorcode[error] in stopped.attrs["status_reason"]
    assert main(["-q", "run", str(cfg), "--resume"]) == 0
    assert diff_stores(reference, store, ignore_attrs=IGNORED) == []


def test_an_unwritable_output_is_refused_before_training(tmp_path, tiny_config, toml_dumps, capsys, monkeypatch):
    cfg = _config(tmp_path, tiny_config, toml_dumps)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    import losslines.runner.driver as driver

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded for an output that cannot be written")

    monkeypatch.setattr(driver, "build_parts", no_data)
    assert main(["-q", "run", str(cfg), "--out", str(blocker / "run.zarr")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["-q", "run", str(cfg), "--out", "/proc/losslines-test/run.zarr"]) == 2  # read-only, even for root
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not writable" in err and "/proc" in err


def test_a_store_folder_deleted_mid_run_is_noticed_not_recreated(tmp_path, tiny_config, toml_dumps, capsys,
                                                                monkeypatch):
    cfg = _config(tmp_path, tiny_config, toml_dumps)
    store = tmp_path / "run.zarr"
    from losslines.runner.loop import TrainingLoop

    original = TrainingLoop._step

    def step_then_vanish(self, step):
        measured = original(self, step)
        if step == 4:
            self.writer.flush()  # (the writer thread idle: rmtree does not race its writes)
            shutil.rmtree(store)  # deleted by someone else (or its disk unmounted)
        return measured

    monkeypatch.setattr(TrainingLoop, "_step", step_then_vanish)
    assert main(["-q", "run", str(cfg)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("losslines: storage error:") and "vanished" in err, err
    assert not store.exists()  # no headless store was recreated around later chunks

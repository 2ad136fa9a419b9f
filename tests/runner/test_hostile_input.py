"""Hostile and mistaken input: files beside a store, pickles to import and output paths are data,
never code, and never overwritten.

* A checkpoint holds tensors and plain data only and is loaded with ``weights_only=True``; a
  checkpoint whose unpickling would run code is refused with one line (exit 2) and runs nothing.
* ``import-pickles`` unpickles through an allow-list: a hostile ``line_data_{step}.pickle`` runs
  nothing either.
* ``--out`` naming a folder that is not a losslines store is refused by every command that writes
  a store, and the user's file in it survives.
* The CLI tells user errors (exit 2, one line) from internal ones (exit 1, one line naming the
  traceback's file; ``--debug`` prints it).

Every hostile payload is first shown to run its code when unpickled the ordinary way, so the
tests that it does not are not vacuous.
"""

from __future__ import annotations

import io
import logging
import pathlib
import pickle
import random
import re
import tempfile

import numpy as np
import pytest
import torch

import losslines.cli as cli
from losslines.cli import is_user_error, main
from losslines.engine.rng import global_rng_state, set_global_rng_state
from losslines.runner.checkpoint import TrainingState, checkpoint_dir, save_checkpoint
from losslines.runner.config import ConfigError, config_to_dict, parse_config
from losslines.runner.driver import run
from losslines.store import open_store
from losslines.store.location import location


@pytest.fixture(autouse=True)
def restore_logging():
    """``main`` configures the losslines logger; put it back for the next test."""
    logger = logging.getLogger("losslines")
    state = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = state


class Touch:
    """Unpickles into a call that creates ``marker``: the stand-in for any code a pickle can run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


class TorchStorageTouch:
    """Unpickles into ``torch.storage._load_from_bytes(<a torch file holding a Touch>)``: the route
    a pickled tensor takes, which loads its bytes with ``torch.load``."""

    def __init__(self, marker: pathlib.Path):
        buffer = io.BytesIO()
        torch.save(Touch(marker), buffer)
        self.data = buffer.getvalue()

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.data,)


def _torch_file(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def hostile_checkpoints(marker: pathlib.Path) -> dict[str, bytes]:
    """Files at a checkpoint's place whose ordinary unpickling creates ``marker``."""
    state = {"format": 2, "step": Touch(marker)}
    return {"torch-zip": _torch_file(state), "pickle-protocol-2": pickle.dumps(state, protocol=2),
            "pickle-protocol-5": pickle.dumps(state, protocol=5)}


def _assert_runs_code_when_unpickled_plainly(data: bytes, marker: pathlib.Path) -> None:
    """The control: the payload really runs code (then the marker is removed again)."""
    assert not marker.exists()
    if data.startswith(b"PK"):  # a torch zip file
        torch.load(io.BytesIO(data), weights_only=False)
    else:
        pickle.loads(data)
    assert marker.exists()
    marker.unlink()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, tiny_config, toml_dumps):
    """A tiny run stopped before step 4 (store and checkpoint on disk) and its config file."""
    tmp = tmp_path_factory.mktemp("stopped")
    cfg = tiny_config(tmp, "threads=1", "train.steps=8")
    assert run(cfg, progress=False, stop_at_step=4).status == "interrupted"
    config = tmp / "run.toml"
    config.write_text(toml_dumps(config_to_dict(cfg)))
    return cfg, config


# -- checkpoints: tensors and plain data, loaded with weights_only=True ---------------------------------------


@pytest.mark.parametrize("overrides", [(), ("train.optimizer='adam'", "train.momentum=0.0", "train.lr=0.01",
                                            "measure.direction='step'")], ids=["sgd-direction", "torch-adam"])
def test_a_run_s_checkpoint_loads_with_weights_only(tmp_path, tiny_config, overrides):
    cfg = tiny_config(tmp_path, "threads=1", "train.steps=4", *overrides)
    run(cfg, progress=False)
    raw = (checkpoint_dir(cfg.store_location) / "latest.pt").read_bytes()
    payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    assert payload["format"] == 2 and payload["step"] == 4
    key = payload["global_rng"]["numpy"]["key"]
    assert isinstance(key, tuple) and len(key) == 624
    assert payload["stepper"]  # the optimizer's or the SGD direction's state came through


def test_global_generators_survive_a_weights_only_round_trip():
    """numpy's generator state (arrays, numpy ints) travels as plain data and restores every draw."""
    np.random.seed(11)
    np.random.standard_normal()  # a cached Gaussian: has_gauss = 1
    random.seed(12)
    torch.manual_seed(13)
    state = global_rng_state()
    expected = (np.random.standard_normal(3), np.random.randint(0, 10**6, 3), random.random(), torch.rand(3))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    set_global_rng_state(torch.load(buffer, weights_only=True))
    got = (np.random.standard_normal(3), np.random.randint(0, 10**6, 3), random.random(), torch.rand(3))
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2] and torch.equal(got[3], expected[3])


def test_saving_a_state_with_a_numpy_object_fails_loudly_and_writes_nothing(tmp_path):
    state = TrainingState(step=1, committed_lines=0, epoch=0, epoch_order=torch.arange(4), model={},
                          stepper={"lr": np.float64(0.1)}, generators={}, global_rng={}, config={})
    with pytest.raises(TypeError, match=r"checkpoint\.stepper\.lr is a numpy\.float64"):
        save_checkpoint(location(tmp_path / "ckpt"), state)
    assert not (tmp_path / "ckpt" / "latest.pt").exists()


@pytest.mark.parametrize("kind", ["torch-zip", "pickle-protocol-2", "pickle-protocol-5"])
def test_hostile_checkpoint_is_refused_on_resume_and_runs_nothing(tmp_path, stopped_run, kind, capsys):
    cfg, config = stopped_run
    marker = tmp_path / "pwned"
    data = hostile_checkpoints(marker)[kind]
    _assert_runs_code_when_unpickled_plainly(data, marker)
    target = checkpoint_dir(cfg.store_location).path / "latest.pt"
    line = _resume_with_checkpoint(target, data, config, capsys)
    assert not marker.exists()
    assert str(target) in line and "non-tensor objects" in line and "will not be unpickled" in line
    assert open_store(cfg.store_path).committed_lines == 2  # the store is as the stopped run left it


def test_damaged_checkpoint_is_one_line(tmp_path, stopped_run, capsys):
    cfg, config = stopped_run
    target = checkpoint_dir(cfg.store_location).path / "latest.pt"
    line = _resume_with_checkpoint(target, target.read_bytes()[:200], config, capsys)
    assert str(target) in line and "damaged" in line


def _resume_with_checkpoint(target, data: bytes, config, capsys) -> str:
    """``run --resume`` with ``data`` in place of the checkpoint ``target`` (restored after):
    it must exit 2; returns its one stderr line."""
    original = target.read_bytes()
    target.write_bytes(data)
    try:
        capsys.readouterr()
        assert main(["run", str(config), "-q", "--resume"]) == 2
        return _one_line(capsys.readouterr().err)
    finally:
        target.write_bytes(original)


# -- import-pickles: an allow-listed unpickler -------------------------------------------------------------


@pytest.mark.parametrize("payload", [Touch, TorchStorageTouch], ids=["global", "tensor-storage"])
def test_hostile_line_pickle_is_refused_and_runs_nothing(tmp_path, payload, capsys):
    marker = tmp_path / "pwned"
    src = tmp_path / "pickles"
    src.mkdir()
    grid = np.linspace(-0.1, 0.1, 5)
    line = (np.ones((3, 5)), np.ones((2, 5)), grid, payload(marker), 0.01, 1.0, False, 0)
    data = pickle.dumps(line, protocol=2)
    _assert_runs_code_when_unpickled_plainly(data, marker)
    (src / "line_data_0.pickle").write_bytes(data)
    capsys.readouterr()
    assert main(["import-pickles", str(src), "--out", str(tmp_path / "out.zarr")]) == 2
    line_out = _one_line(capsys.readouterr().err)
    assert not marker.exists()
    assert "line_data_0.pickle" in line_out
    assert not (tmp_path / "out.zarr").exists()


# -- --out at a folder that is not a store -----------------------------------------------------------------


def _user_folder(tmp_path) -> pathlib.Path:
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("months of work")
    return folder


def _assert_untouched(folder: pathlib.Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == ["chapter1.tex"]
    assert (folder / "chapter1.tex").read_text() == "months of work"
    assert not folder.with_name(folder.name + ".ckpt").exists()


@pytest.mark.parametrize("flags", [[], ["--resume"]], ids=["new", "resume"])
def test_run_refuses_an_out_folder_that_is_not_a_store(tmp_path, stopped_run, flags, capsys):
    _, config = stopped_run
    folder = _user_folder(tmp_path)
    capsys.readouterr()
    assert main(["run", str(config), "-q", "--out", str(folder), *flags]) == 2
    assert "is not a losslines store" in _one_line(capsys.readouterr().err)
    _assert_untouched(folder)


@pytest.mark.parametrize("flags", [[], ["--resume"]], ids=["new", "resume"])
def test_measure_refuses_an_out_folder_that_is_not_a_store(tmp_path, tiny_config, flags, capsys):
    recorded = tiny_config(tmp_path, "threads=1", "train.steps=2", "measure.mode='record'", name="recording")
    assert run(recorded, progress=False).status == "complete"
    folder = _user_folder(tmp_path)
    capsys.readouterr()
    assert main(["measure", str(recorded.store_path), "--out", str(folder), "-q", *flags]) == 2
    assert "is not a losslines store" in _one_line(capsys.readouterr().err)
    _assert_untouched(folder)


@pytest.mark.parametrize("flags", [[], ["--overwrite"]], ids=["new", "overwrite"])
def test_import_pickles_refuses_an_out_folder_that_is_not_a_store(tmp_path, flags, capsys):
    src = tmp_path / "pickles"
    src.mkdir()
    grid = np.linspace(-0.1, 0.1, 5)
    line = (np.ones((3, 5)), np.ones((2, 5)), grid, np.ones((2, 5)), 0.01, 1.0, False, 0)
    (src / "line_data_0.pickle").write_bytes(pickle.dumps(line))
    folder = _user_folder(tmp_path)
    capsys.readouterr()
    assert main(["import-pickles", str(src), "--out", str(folder), *flags]) == 2
    assert str(folder) in _one_line(capsys.readouterr().err)
    _assert_untouched(folder)


# -- user errors (exit 2) and internal errors (exit 1) -----------------------------------------------------


def _raised(source: str, filename: str) -> BaseException:
    """The exception that ``source`` raises when run as if it were the file ``filename``."""
    try:
        exec(compile(source, filename, "exec"), {"ConfigError": ConfigError})
    except BaseException as err:  # noqa: BLE001
        return err
    raise AssertionError(f"{source!r} raised nothing")


def test_user_errors_are_losslines_raise_statements_and_path_errors():
    inside = str(pathlib.Path(cli.__file__).parent / "runner" / "not_a_module.py")
    assert is_user_error(_raised("raise ValueError('bad value')", inside))
    assert is_user_error(_raised("raise ConfigError('bad key')", inside))
    assert is_user_error(_raised("try:\n    int('x')\nexcept ValueError as e:\n    raise ValueError('y') from e", inside))
    assert is_user_error(_raised("open('/nonexistent/losslines/file')", __file__))  # a path error, raised anywhere
    assert not is_user_error(_raised("int('x')", inside))  # a builtin losslines called
    assert not is_user_error(_raised("raise RuntimeError('broken')", inside))
    assert not is_user_error(_raised("raise ValueError('elsewhere')", __file__))
    with pytest.raises(ValueError) as numpy_error:
        np.zeros(3).reshape(2, 2)  # raised inside numpy
    assert not is_user_error(numpy_error.value)
    with pytest.raises(ConfigError) as config_error:
        parse_config({"name": "x", "train": {"lr": -1.0}})
    assert is_user_error(config_error.value)


def _fail_inside_the_run(error: BaseException):
    def failing_run(*args, **kwargs):
        raise error
    return failing_run


def test_internal_error_is_one_line_naming_a_traceback_file(tmp_path, stopped_run, monkeypatch, capsys):
    _, config = stopped_run
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    failure = RuntimeError("CUDA error: device-side assert triggered")
    monkeypatch.setattr("losslines.runner.driver.run", _fail_inside_the_run(failure))
    capsys.readouterr()
    assert main(["run", str(config), "-q", "--out", str(tmp_path / "new.zarr")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("losslines: internal error: RuntimeError: CUDA error: device-side assert triggered (")
    assert "--debug" in line and "Traceback" not in line
    saved = pathlib.Path(re.search(r"traceback in (\S+);", line).group(1))
    assert saved.parent == tmp_path
    text = saved.read_text()
    assert text.startswith("Traceback (most recent call last)") and "failing_run" in text


def test_a_value_error_from_inside_numpy_is_internal(tmp_path, stopped_run, monkeypatch, capsys):
    _, config = stopped_run
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def numpy_fails(*args, **kwargs):
        return np.zeros(3).reshape(2, 2)

    monkeypatch.setattr("losslines.runner.driver.run", numpy_fails)
    capsys.readouterr()
    assert main(["run", str(config), "-q", "--out", str(tmp_path / "new.zarr")]) == 1
    assert _one_line(capsys.readouterr().err).startswith("losslines: internal error: ValueError: cannot reshape")


def test_debug_prints_the_traceback(tmp_path, stopped_run, monkeypatch, capsys):
    _, config = stopped_run
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr("losslines.runner.driver.run", _fail_inside_the_run(RuntimeError("boom")))
    capsys.readouterr()
    assert main(["--debug", "run", str(config), "-q", "--out", str(tmp_path / "new.zarr")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and "failing_run" in err
    assert err.strip().splitlines()[-1] == "losslines: internal error: RuntimeError: boom (traceback above)"
    assert list(tmp_path.iterdir()) == []  # no store, and no traceback file: it was printed


def test_config_error_stays_exit_2_and_one_line(tmp_path, stopped_run, capsys):
    _, config = stopped_run
    capsys.readouterr()
    assert main(["run", str(config), "-q", "--out", str(tmp_path / "new.zarr"), "--set", "train.lr=-1.0"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("losslines: error: ") and "train.lr" in line
    assert main(["--debug", "run", str(config), "-q", "--out", str(tmp_path / "new.zarr"), "--set", "train.lr=-1.0"]) == 2
    err = capsys.readouterr().err  # --debug shows where a user error came from too
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1] == line
    assert not (tmp_path / "new.zarr").exists()

"""Record mode and ``losslines measure``: a run records what its scheduled lines need, and the
lines measured from the recording are the lines the same config measures inline, bit for bit —
in one process, after an interrupted and resumed recording, after an interrupted and resumed
measurement, and (tests/runner/test_distributed.py) line-parallel over two processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from losslines.cli import main
from losslines.runner.config import ConfigError
from losslines.runner.driver import run
from losslines.runner.measure import measure_recording
from losslines.runner.recording import RecordedLine, RecordingReader, RecordingWriter
from losslines.store import open_store
from losslines.store.writer import StoreWriter

RECORD = "measure.mode='record'"


def assert_same_lines(a, b) -> None:
    """Every array of store ``b`` equals that of store ``a``, bit for bit."""
    assert a.committed_lines == b.committed_lines and a.names == b.names
    for name in a.names:
        np.testing.assert_array_equal(b[name][...], a[name][...], err_msg=name)


@pytest.mark.parametrize("overrides", [
    (),  # SGD with momentum, the paper's direction, BatchNorm groups
    ("train.optimizer='adam'", "train.momentum=0.0", "train.lr=0.01", "measure.direction='step'", "measure.bn='running'",
     "measure.max_enlargements=2", "measure.half_width=0.05"),  # any optimizer, running statistics, rings
    ("data.name=synthetic_tokens", "data.n_val=8", "data.options={vocab=13, seq_len=6}", "model.name=byte_lm",
     "model.width=0.125", "model.options={depth=1, heads=2, dropout=0.1}", "measure.loss=token_cross_entropy",
     "measure.bn=running", "measure.dropout='fixed'", "train.momentum=0.0", "measure.sample_dtype='float16'"),
], ids=["sgd-momentum", "adam-running-rings", "lm-fixed-dropout"])
def test_measured_recording_is_the_inline_store(tmp_path, tiny_config, overrides):
    inline = tiny_config(tmp_path, "threads=1", *overrides, name="inline")
    run(inline, progress=False)
    recorded = tiny_config(tmp_path, "threads=1", *overrides, RECORD, name="recording")
    result = run(recorded, progress=False)
    assert result.status == "complete" and result.lines == open_store(inline.store_path).committed_lines
    rec = RecordingReader(recorded.store_path)
    assert rec.attrs["status"] == "complete" and len(rec) == result.lines

    measured = measure_recording(recorded.store_path, tmp_path / "measured.zarr", progress=False)
    assert measured.status == "complete"
    store = open_store(tmp_path / "measured.zarr")
    assert store.status == "complete" and store.attrs["measured_from_recording"] == str(recorded.store_path)
    # regression: the recorded `threads` (the recording machine's) oversubscribed N measuring processes
    assert rec.config["threads"] == 1 and store.config["threads"] == 0
    assert_same_lines(open_store(inline.store_path), store)


def test_an_interrupted_recording_resumes_to_the_same_lines(tmp_path, tiny_config):
    whole = tiny_config(tmp_path, "threads=1", name="inline")
    run(whole, progress=False)
    cfg = tiny_config(tmp_path, "threads=1", RECORD, name="recording")
    assert run(cfg, progress=False, stop_at_step=7).status == "interrupted"  # checkpoint at step 7, line 4 recorded
    assert RecordingReader(cfg.store_path).attrs["status"] == "failed"
    assert run(cfg, progress=False, resume=True).status == "complete"
    measure_recording(cfg.store_path, tmp_path / "measured.zarr", progress=False)
    assert_same_lines(open_store(whole.store_path), open_store(tmp_path / "measured.zarr"))


def stopped_at(path, lines: int) -> None:
    """Make the complete store at ``path`` look stopped after ``lines`` lines."""
    zarr.open_group(path, mode="r+").update_attributes({"status": "failed"})
    StoreWriter.resume(path, at_line=lines).close("failed", reason=f"as if stopped after {lines} lines")


def test_an_interrupted_measurement_resumes_after_its_committed_lines(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path, "threads=1", RECORD, name="recording")
    run(cfg, progress=False)
    whole, part = tmp_path / "whole.zarr", tmp_path / "part.zarr"
    measure_recording(cfg.store_path, whole, progress=False)
    measure_recording(cfg.store_path, part, progress=False)
    stopped_at(part, 2)
    assert open_store(part).committed_lines == 2
    assert measure_recording(cfg.store_path, part, progress=False, resume=True).status == "complete"
    assert_same_lines(open_store(whole), open_store(part))
    other = tiny_config(tmp_path, "threads=1", RECORD, "measure.offset=1", name="other")  # other steps
    run(other, progress=False)
    stopped_at(part, 3)
    with pytest.raises(ValueError, match="not the first lines of the recording"):
        measure_recording(other.store_path, part, progress=False, resume=True)


def test_recording_round_trip_keeps_every_tensor_exactly(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)).to(torch.bfloat16)
    model[0].bias.requires_grad_(False)  # a frozen parameter travels with the buffers
    writer = RecordingWriter.create(tmp_path / "r.zarr", model=model, batch_size=5, attrs={"config": {}}, capacity=1)
    gen = torch.Generator().manual_seed(0)
    lines = []
    for step, rows in ((0, 5), (3, 2)):  # the second batch is short: padded in the recording
        theta = {n: torch.randn(p.shape, generator=gen).to(p.dtype) for n, p in model.named_parameters() if p.requires_grad}
        batch = ({"x": torch.randn(rows, 3, generator=gen), "mask": torch.ones(rows, 3, dtype=torch.bool)},
                 torch.randint(0, 2, (rows,), generator=gen))
        buffers = {n: b + step for n, b in model.named_buffers()}
        line = RecordedLine(step=step, epoch=step // 2, lr=0.1 * (step + 1), direction_norm=1.5, update_step=0.15,
                            trained_bn="batch" if step == 0 else "running", theta=theta,
                            direction={n: -t for n, t in theta.items()}, buffers=buffers,
                            frozen={"0.bias": torch.full((4,), 0.5, dtype=torch.bfloat16)}, batch=batch,
                            batch_ids=np.arange(rows) + 10 * step)
        assert writer.append(line) == len(lines)  # the second line grows the arrays (capacity 1)
        lines.append(line)
    writer.close()
    rec = RecordingReader(tmp_path / "r.zarr")
    assert len(rec) == 2 and list(rec.steps()) == [0, 3]
    for i, want in enumerate(lines):
        got = rec.line(i)
        assert (got.step, got.epoch, got.lr, got.direction_norm, got.update_step, got.trained_bn) == \
            (want.step, want.epoch, want.lr, want.direction_norm, want.update_step, want.trained_bn)
        for name in ("theta", "direction", "buffers", "frozen"):
            a, b = getattr(want, name), getattr(got, name)
            assert a.keys() == b.keys()
            for key in a:
                assert b[key].dtype == a[key].dtype and torch.equal(b[key], a[key]), (name, key)
        assert torch.equal(got.batch[0]["x"], want.batch[0]["x"]) and torch.equal(got.batch[1], want.batch[1])
        assert got.batch[0]["mask"].dtype == torch.bool and got.batch[0]["mask"].shape[0] == want.batch[1].shape[0]
        np.testing.assert_array_equal(got.batch_ids, want.batch_ids)
    with pytest.raises(IndexError, match="line 2 is not among the 2 committed lines"):
        rec.line(2)


def test_a_batch_of_another_shape_is_refused_before_anything_is_written(tmp_path):
    model = torch.nn.Linear(3, 2)
    writer = RecordingWriter.create(tmp_path / "r.zarr", model=model, batch_size=4, attrs={"config": {}}, capacity=2)
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}

    def line(x):
        return RecordedLine(step=0, epoch=0, lr=0.1, direction_norm=1.0, update_step=0.1, trained_bn="batch",
                            theta=theta, direction=theta, buffers={}, frozen={}, batch=(x, torch.zeros(len(x))),
                            batch_ids=np.arange(len(x)))

    writer.append(line(torch.zeros(4, 3)))
    with pytest.raises(ValueError, match="one shape per sample"):
        writer.append(line(torch.zeros(4, 5)))
    with pytest.raises(ValueError, match="up to 4 rows"):
        writer.append(line(torch.zeros(6, 3)))
    assert RecordingReader(tmp_path / "r.zarr").committed_lines == 1


def test_bad_input_is_one_clear_line(tmp_path, tiny_config, capsys):
    with pytest.raises(ConfigError, match="measure.per_step.*mode = 'inline'"):
        tiny_config(tmp_path, RECORD, "measure.per_step=true")
    with pytest.raises(ConfigError, match="measure.directions_at.*mode = 'inline'"):
        tiny_config(tmp_path, RECORD, "measure.directions_at=[2]", "measure.n_directions=2")
    store = tiny_config(tmp_path, "threads=1", "train.steps=2", name="store")
    run(store, progress=False)
    capsys.readouterr()  # the library run's own log lines (an earlier CLI call in this process set up logging)
    assert main(["measure", str(store.store_path), "--out", str(tmp_path / "m.zarr"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "is not a losslines recording: it is a line store" in err and len(err.strip().splitlines()) == 1
    assert main(["measure", str(tmp_path / "absent.zarr"), "--out", str(tmp_path / "m.zarr"), "-q"]) == 2
    assert "no losslines recording at" in capsys.readouterr().err

    cfg = tiny_config(tmp_path, "threads=1", "train.steps=2", RECORD, name="recording")
    run(cfg, progress=False)
    assert main(["measure", str(cfg.store_path), "--out", str(store.store_path), "-q"]) == 2  # not overwritten
    assert "already exists" in capsys.readouterr().err
    assert open_store(store.store_path).committed_lines == 1
    assert main(["measure", str(cfg.store_path), "--out", str(tmp_path / "m.zarr"), "-q"]) == 0
    assert "complete: 1 lines" in capsys.readouterr().out
    assert main(["info", str(cfg.store_path)]) == 2  # a recording is not a store, and the error says what to do
    assert "is a losslines recording, not a store: measure its lines with losslines measure" in capsys.readouterr().err
    with pytest.raises(FileExistsError, match="recording .* already exists"):
        run(cfg, progress=False)

"""The training driver: a run writes a real store; a stopped run resumes to the same arrays."""

from __future__ import annotations

import numpy as np
import pytest

from losslines.cli import main
from losslines.runner.config import config_to_dict
from losslines.runner.driver import run
from losslines.store import open_store

PER_LINE = ["step", "epoch", "lr", "direction_norm", "update_step", "loss_train", "loss_val", "loss_batch",
            "acc_train", "acc_val", "loss_at_update_train", "slope0_train", "slope0_batch",
            "sample_loss_train", "sample_loss_val", "sample_loss_batch", "batch_ids"]


def read_all(path) -> dict[str, np.ndarray]:
    store = open_store(path)
    return {name: store[name][...] for name in PER_LINE}


def assert_same_arrays(a: dict, b: dict) -> None:
    for name in PER_LINE:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_run_writes_a_complete_store(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path)
    result = run(cfg, progress=False)
    assert result.status == "complete" and result.steps == 12 and result.lines == 6
    store = open_store(cfg.store_path)
    assert store.status == "complete" and store.committed_lines == 6
    np.testing.assert_array_equal(store["step"][...], [0, 2, 4, 6, 8, 10])
    assert store["loss_train"].shape == (6, store.position.shape[0])
    assert store["sample_loss_train"].shape == (6, store.position.shape[0], 96)
    assert np.isfinite(store["loss_train"][...]).all()
    # The full-batch mean is the mean of the stored per-sample losses (float32 storage).
    np.testing.assert_allclose(store["sample_loss_train"][...].mean(axis=-1), store["loss_train"][...], rtol=1e-5)
    # Plain-SGD-with-momentum direction: the step taken is lr * ||buf||.
    np.testing.assert_allclose(store["update_step"][...], store["lr"][...] * store["direction_norm"][...], rtol=1e-5)
    assert store.config["name"] == "tiny"


def test_sgd_direction_batch_slope_is_minus_gradient_norm(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path, "train.momentum=0.0")
    run(cfg, progress=False)
    store = open_store(cfg.store_path)
    np.testing.assert_allclose(store["slope0_batch"][...], -store["direction_norm"][...], rtol=1e-4)


@pytest.mark.parametrize("stop_at", [5, 6, 7])  # 6: an epoch boundary (96 samples / batch 16)
def test_resume_after_interrupt_gives_the_same_arrays(tmp_path, tiny_config, stop_at):
    whole = tiny_config(tmp_path, name="whole")
    run(whole, progress=False)
    cfg = tiny_config(tmp_path, name="sliced")
    first = run(cfg, progress=False, stop_at_step=stop_at)
    assert first.status == "interrupted" and first.steps == stop_at
    assert open_store(cfg.store_path).status == "failed"
    second = run(cfg, resume=True, progress=False)
    assert second.status == "complete" and second.lines == 6
    assert_same_arrays(read_all(whole.store_path), read_all(cfg.store_path))
    assert open_store(cfg.store_path).status == "complete"


def test_resume_after_crash_rolls_back_to_the_checkpoint(tmp_path, tiny_config):
    """A crash after lines were committed past the last checkpoint: resume redoes those lines."""
    whole = tiny_config(tmp_path, name="whole")
    run(whole, progress=False)
    cfg = tiny_config(tmp_path, name="crashed")

    def crash(step):
        if step == 10:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, progress=False, on_step=crash)
    crashed = open_store(cfg.store_path)
    assert crashed.status == "failed" and crashed.committed_lines == 6  # lines 0..10 were kept
    result = run(cfg, resume=True, progress=False)  # restarts at the step-8 checkpoint
    assert result.status == "complete"
    assert_same_arrays(read_all(whole.store_path), read_all(cfg.store_path))


def test_existing_store_is_kept_without_resume(tmp_path, tiny_config, capsys):
    cfg = tiny_config(tmp_path)
    run(cfg, progress=False)
    before = read_all(cfg.store_path)
    with pytest.raises(FileExistsError, match="--resume"):
        run(cfg, progress=False)
    assert_same_arrays(before, read_all(cfg.store_path))


def test_resume_with_another_config_is_refused(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path)
    run(cfg, progress=False, stop_at_step=5)
    other = tiny_config(tmp_path, "train.lr=0.05", "measure.every=3")
    with pytest.raises(ValueError, match=r"different config \(changed: measure.every, train.lr\)"):
        run(other, resume=True, progress=False)
    moved_data = tiny_config(tmp_path, "data.root='/elsewhere'")  # where the data lives may change
    assert run(moved_data, resume=True, progress=False).status == "complete"


def test_adam_step_direction(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path, "train.optimizer='adam'", "train.momentum=0.0", "train.lr=0.01",
                      "measure.direction='step'")
    result = run(cfg, progress=False)
    store = open_store(cfg.store_path)
    assert result.lines == 6
    u = store["update_step"][...]
    np.testing.assert_allclose(store["direction_norm"][...], u / 0.01, rtol=1e-5)
    assert (u > 0).all()


def test_cli_run_and_info(tmp_path, tiny_config, capsys):
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(
        'name = "clitiny"\n[data]\nname = "synthetic"\nn_val = 16\n'
        "[data.options]\nshape = [1, 8, 8]\nnum_classes = 3\nn_samples = 80\n"
        '[model]\nname = "mlp"\n[train]\nsteps = 4\nbatch_size = 16\n'
        '[measure]\nbn = "running"\nspacing = 0.1\nhalf_width = 0.3\n'
    )
    out = tmp_path / "cli.zarr"
    assert main(["run", str(cfg_path), "--out", str(out), "-q"]) == 0
    assert "complete" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "complete" in text and "4 committed" in text
    assert "optimizer sgd, lr 0.1" in text and "bn running" in text and "strategy   loop" in text
    # Running again onto the same store: exit 2, data kept.
    assert main(["run", str(cfg_path), "--out", str(out), "-q"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert open_store(out).committed_lines == 4


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_checkpoints_between_steps_and_resume_matches(tmp_path, tiny_config, toml_dumps, signame):
    """A real SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption) to `losslines run`: exit 130,
    status failed with the reason, and --resume completes the same arrays."""
    import json
    import signal
    import subprocess
    import sys
    import time

    # One thread in both processes: thread count changes float reduction order.
    whole = tiny_config(tmp_path, "train.steps=40", "train.checkpoint_every=0", "threads=1", name="whole")
    run(whole, progress=False)

    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(toml_dumps(config_to_dict(tiny_config(tmp_path, name="from_toml"))))
    out = tmp_path / "sig.zarr"
    cmd = [sys.executable, "-m", "losslines", "run", str(cfg_path), "--out", str(out), "-q",
           "--set", "train.steps=40", "--set", "train.checkpoint_every=0", "--set", "threads=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        zattrs = out / "zarr.json"
        if zattrs.exists():
            try:
                if json.loads(zattrs.read_text())["attributes"].get("committed_lines", 0) >= 0:
                    break
            except (ValueError, KeyError):
                pass
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "continue" in err and "--resume" in err
    assert open_store(out).status == "failed" and signame in open_store(out).attrs["status_reason"]
    resume = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resume.returncode == 0, resume.stderr
    a, b = open_store(whole.store_path), open_store(out)
    for name in PER_LINE:
        np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)



def test_vmap_and_auto_strategies_match_loop_and_auto_is_recorded(tmp_path, tiny_config, capsys):
    loop = tiny_config(tmp_path, "train.steps=4", name="loop")
    run(loop, progress=False)
    a = read_all(loop.store_path)
    for strategy in ("vmap", "auto"):
        cfg = tiny_config(tmp_path, "train.steps=4", f"measure.strategy='{strategy}'", "measure.max_memory='64MiB'",
                          name=strategy)
        run(cfg, progress=False)
        b = read_all(cfg.store_path)
        for name in ("loss_train", "loss_val", "loss_batch", "sample_loss_train", "slope0_train", "update_step"):
            np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6, err_msg=f"{strategy} {name}")
        report = open_store(cfg.store_path).attrs["strategy_report"]
        assert report["requested"] == strategy
        assert report["chosen"] in ("loop", "vmap")
    assert "strategy auto chose" in capsys.readouterr().err
    assert "strategy_report" in open_store(loop.store_path).attrs


def test_second_ctrl_c_inside_a_step_keeps_the_last_periodic_checkpoint(tmp_path, tiny_config):
    """Regression: a second SIGINT mid-step used to checkpoint the post-step state as step t,
    so the resumed run took step t twice and stored a duplicate line."""
    import os
    import signal

    whole = tiny_config(tmp_path, name="whole")
    run(whole, progress=False)
    cfg = tiny_config(tmp_path, name="aborted")

    def two_interrupts(step):
        if step == 6:  # inside the loop body: after the step, before the bookkeeping
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    result = run(cfg, progress=False, on_step=two_interrupts)
    assert result.status == "interrupted"
    store = open_store(cfg.store_path)
    assert store.status == "failed" and "aborted during step 6" in store.attrs["status_reason"]
    assert run(cfg, resume=True, progress=False).status == "complete"  # from the step-4 checkpoint
    assert_same_arrays(read_all(whole.store_path), read_all(cfg.store_path))


def test_settings_the_evaluator_refuses_leave_no_store_behind(tmp_path, tiny_config):
    """Regression: the sampler was built after the store, so its errors left a 'running' store
    that neither a re-run nor --resume could use."""
    cfg = tiny_config(tmp_path, "model.name='mlp'", "model.options.batch_norm=true", "measure.n_train=33")
    with pytest.raises(ValueError, match="single-sample group"):
        run(cfg, progress=False)
    assert not cfg.store_path.exists()


def test_dropout_in_training_turns_the_sgd_slope_check_off_and_says_so(tmp_path, tiny_config):
    """Regression: plain SGD on a model with dropout crashed on the slope check (training
    differentiates the dropout-masked loss; the measurement evaluates dropout as the identity)."""
    cfg = tiny_config(tmp_path, "model.name='mobilenetv2'", "model.options.dropout=0.5", "train.momentum=0.0",
                      "train.steps=2")
    assert run(cfg, progress=False).status == "complete"
    assert open_store(cfg.store_path).attrs["semantics"]["sgd_slope_check"].startswith("off")

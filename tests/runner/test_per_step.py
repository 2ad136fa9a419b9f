"""The per-step mode: every training step's loss, exact slope and loss at the step, in steps/."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from losslines.analysis import analyze_store
from losslines.engine import LineSampler, Schedule, make_grid
from losslines.runner.driver import run
from losslines.store import open_store
from losslines.store.verify import verify_store


def test_every_step_is_recorded_resumes_identically_verifies_and_is_analysed(tmp_path, tiny_config):
    whole = tiny_config(tmp_path, "measure.per_step=true", "train.momentum=0.0", name="whole")
    run(whole, progress=False)
    store = open_store(whole.store_path)
    steps = store.steps
    assert steps.committed_lines == whole.train.steps
    np.testing.assert_array_equal(steps["step"][...], np.arange(whole.train.steps))
    # on the scheduled steps the per-step values are the dense line's
    zero = int(np.flatnonzero(store.position == 0)[0])
    every = whole.measure.every
    np.testing.assert_array_equal(steps["loss0_train"][...][::every], store["loss_train"][:, zero])
    np.testing.assert_array_equal(steps["loss_at_update_val"][...][::every], store["loss_at_update_val"][...])
    # plain SGD: the batch slope is -||g|| on every step, dense or not
    np.testing.assert_allclose(steps["slope0_batch"][...], -steps["direction_norm"][...], rtol=1e-4)
    assert verify_store(whole.store_path) == []

    sliced = tiny_config(tmp_path, "measure.per_step=true", "train.momentum=0.0", name="sliced")
    run(sliced, progress=False, stop_at_step=7)
    assert open_store(sliced.store_path).steps.committed_lines == 7
    run(sliced, resume=True, progress=False)
    again = open_store(sliced.store_path).steps
    for name in steps.names:
        np.testing.assert_array_equal(again[name][...], steps[name][...], err_msg=name)

    report = analyze_store(whole.store_path, tmp_path / "report", figures=True)
    per_step = report.summary["per_step"]
    assert per_step["steps"] == whole.train.steps and 0 <= per_step["train"]["fraction_improving"] <= 1
    assert (tmp_path / "report" / "per_step.png").exists()


def test_the_sampler_emits_step_records_without_a_store(tiny_config, tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, y = torch.randn(24, 5), torch.randint(0, 3, (24,))
    sampler = LineSampler(model, grid=make_grid(0.1, 0.2), schedule=Schedule.explicit([2]), train=(x, y),
                          bn="running", measure_batch=False, per_step=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(4):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        with sampler.measure(step, opt):
            opt.step()
    assert [r.step for r in sampler.step_records] == [0, 1, 2, 3] and [r.step for r in sampler.records] == [2]
    r = sampler.step_records[1]
    assert r.splits["train"].loss_at_update < r.splits["train"].loss0 and r.splits["train"].slope0 < 0
    try:
        LineSampler(model, grid=make_grid(0.1, 0.2), schedule=Schedule.every(), train=(x, y), bn="running",
                    measure_batch=False, per_step=True, sink=[].append)
    except ValueError as err:
        assert "append_step" in str(err)
    else:
        raise AssertionError("a sink without append_step was accepted for per_step")

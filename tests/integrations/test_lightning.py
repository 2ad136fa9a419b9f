"""The Lightning adapter measures the lines a plain loop measures (same model, data order, steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslines.engine import LineSampler, Schedule, make_grid

pl = pytest.importorskip("lightning.pytorch")
from losslines.integrations.lightning import LineSamplerCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")  # Lightning's advice about workers, loggers, ...

N, BATCH, STEPS = 96, 16, 6


def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, 10, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x, y, torch.arange(N)


def model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3))


def sampler(net, x, y):
    return LineSampler(net, grid=make_grid(0.05, 0.3), schedule=Schedule.every(2), train=(x[:48], y[:48]),
                       val=(x[48:64], y[48:64]), bn="running", loss="cross_entropy", batch_size=BATCH)


class Module(pl.LightningModule):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=0.2, momentum=0.9)


def test_lightning_callback_measures_the_lines_of_a_plain_loop():
    x, y, ids = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, ids), batch_size=BATCH, shuffle=False)

    net = model()
    plain = sampler(net, x, y)
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    for step, (xb, yb, ib) in zip(range(STEPS), loader):
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        with plain.measure(step, opt, batch=(xb, yb), batch_ids=ib):
            opt.step()

    lit_net = model()
    lit = sampler(lit_net, x, y)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[LineSamplerCallback(lit)])
    trainer.fit(Module(lit_net), loader)

    assert [r.step for r in lit.records] == [r.step for r in plain.records] == [0, 2, 4]
    for a, b in zip(plain.records, lit.records):
        assert b.update_step == pytest.approx(a.update_step, rel=1e-6)
        np.testing.assert_array_equal(b.batch_ids, a.batch_ids)
        for split in ("train", "val", "batch"):
            np.testing.assert_allclose(b[split].loss, a[split].loss, rtol=1e-6, err_msg=split)
            np.testing.assert_allclose(b[split].sample_loss, a[split].sample_loss, rtol=1e-5, atol=1e-7)
    # the model after training is what the optimizer produced: measuring changed nothing
    for p, q in zip(net.parameters(), lit_net.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)


def test_gradient_accumulation_is_refused():
    x, y, ids = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, ids), batch_size=BATCH)
    net = model()
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accumulate_grad_batches=2,
                         callbacks=[LineSamplerCallback(sampler(net, x, y))])
    with pytest.raises(ValueError, match="accumulate_grad_batches=2"):
        trainer.fit(Module(net), loader)

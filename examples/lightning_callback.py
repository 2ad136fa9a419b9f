"""Measure lines inside a Lightning run: one callback, the rest is your LightningModule.

    python examples/lightning_callback.py [--out runs/lightning.zarr] [--steps 60]

``pip install 'losslines[lightning]'``. SGD with momentum on a small CNN over the bundled digits,
a line every 10 optimizer steps into a store.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

import losslines
from losslines.engine import LineSampler, Schedule, make_grid
from losslines.integrations.lightning import LineSamplerCallback
from losslines.store import StoreSink


class Digits(pl.LightningModule):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def training_step(self, batch, batch_idx):
        inputs, targets, _ids = batch
        return F.cross_entropy(self.net(inputs), targets)  # the loss the lines measure

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/lightning.zarr")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--spacing", type=float, default=0.02)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    data = losslines.load_dataset("digits", n_val=297)
    net = losslines.build_model("small_cnn", num_classes=data.num_classes, input_shape=data.input_shape, width=0.5)
    batch_size = 64
    sink = StoreSink.create(args.out, sample_ids={"train": data.train.ids.numpy(), "val": data.val.ids.numpy()},
                            attrs={"semantics": {"direction": "step", "optimizer": "sgd(momentum=0.9)", "bn": "batch"}})
    sampler = LineSampler(net, grid=make_grid(args.spacing, 0.5), schedule=Schedule.every(args.every),
                          train=(data.train.inputs, data.train.targets), val=(data.val.inputs, data.val.targets),
                          bn="batch", bn_group=batch_size, batch_size=batch_size, sink=sink)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data.train.inputs, data.train.targets, data.train.ids),
        batch_size=batch_size, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(1))
    trainer = pl.Trainer(max_steps=args.steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[LineSamplerCallback(sampler)])  # ids: the batch's third item
    with sink.writer:
        trainer.fit(Digits(net), loader)

    store = losslines.open_store(args.out)
    print(f"{store.committed_lines} lines at steps {store['step'][...].tolist()} -> {args.out}")


if __name__ == "__main__":
    main()

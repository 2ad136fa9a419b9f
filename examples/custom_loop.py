"""Measure lines inside your own training loop, with any torch optimizer, into a store.

    python examples/custom_loop.py [--out runs/custom.zarr] [--steps 60]

The loop is ordinary PyTorch; the only addition is ``with sampler.measure(...)`` around
``optimizer.step()``. Here: Adam on a small CNN over the bundled digits, a line every 10 steps.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import losslines
from losslines.engine import LineSampler, Schedule, make_grid
from losslines.store import StoreSink


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/custom.zarr")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--spacing", type=float, default=0.02)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    data = losslines.load_dataset("digits", n_val=297)
    model = losslines.build_model("small_cnn", num_classes=data.num_classes, input_shape=data.input_shape,
                                  width=0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch_size = 64

    # The store is created when the sampler opens the sink, after every setting is validated, with
    # the layout of the sampler's records (grid, splits, batch slots).
    sink = StoreSink.create(
        args.out, sample_ids={"train": data.train.ids.numpy(), "val": data.val.ids.numpy()},
        attrs={"semantics": {"direction": "step", "optimizer": "adam", "bn": "batch"}}, sample_dtype="float16",
    )
    sampler = LineSampler(
        model, grid=make_grid(args.spacing, 0.5), schedule=Schedule.every(args.every),
        train=(data.train.inputs, data.train.targets), val=(data.val.inputs, data.val.targets),
        bn="batch", bn_group=batch_size, batch_size=batch_size, sink=sink,
    )
    writer = sink.writer

    order = torch.Generator().manual_seed(1)
    with writer:
        for step in range(args.steps):
            idx = torch.randperm(len(data.train), generator=order)[:batch_size]
            xb, yb = data.train.inputs[idx], data.train.targets[idx]
            model.train()
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            with sampler.measure(step, optimizer, batch=(xb, yb), batch_ids=data.train.ids[idx].numpy()):
                optimizer.step()

    store = losslines.open_store(args.out)
    s_opt = store.position[store["loss_train"][...].argmin(axis=1)]
    print(f"{store.committed_lines} lines in {args.out}; grid argmin of the full-batch loss per line: {s_opt}")
    print(f"step taken by Adam per line: {store['update_step'][...]}")


if __name__ == "__main__":
    main()

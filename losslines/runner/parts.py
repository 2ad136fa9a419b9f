"""A config turned into the parts of a run, through the registries: data, model, optimizer, measurement.

``build_parts(cfg)`` loads the dataset (``losslines.data``), seeds torch and builds the model
(``losslines.models``), the training step (``runner.optimizers``), the loss record
(``losslines.losses``), the data order, the grid and the schedule. ``build_sampler(parts, sink)``
makes the measurement hook; the sink (a ``losslines.store.StoreSink``) is opened by the sampler
once its settings are validated. Nothing here trains or writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from losslines import batched
from losslines.data import Dataset, load_dataset
from losslines.engine import Grid, LineSampler, Schedule, make_grid, make_schedule
from losslines.engine.modes import active_dropout
from losslines.engine.reduced import ReducedNodes
from losslines.losses import Loss, get_loss
from losslines.models import build_model
from losslines.records import SPLITS, LineSink
from losslines.runner.config import RunConfig, memory_budget
from losslines.runner.data_order import DataOrder
from losslines.runner.distributed import SINGLE, Ranks, plan_shards
from losslines.runner.optimizers import Stepper
from losslines.runner.threads import ThreadChoice, apply_threads


@dataclass(frozen=True)
class RunParts:
    """What a run is made of (built once, before anything is trained or written).

    Attributes:
        cfg: the validated config.
        device: where the model, the data and the measurement live.
        dataset: the loaded dataset (CPU tensors, stable ids).
        model: the network, seeded with ``cfg.seed``, on ``device``.
        stepper: the training step (the losslines SGD direction or a torch optimizer).
        loss: the loss record trained and measured.
        order: the training batches (seeded data order and augmentation).
        grid, schedule: where on each line and at which steps lines are measured.
        n_measured: training samples in the measurement set (the first ``n_measured``).
        planned_lines: lines the schedule measures over the whole run.
        ranks: the run's processes (``runner.distributed``; one by default).
        threads: torch's CPU thread count, set here from ``cfg.threads`` (``runner.threads``).
    """

    cfg: RunConfig
    device: torch.device
    dataset: Dataset
    model: nn.Module
    stepper: Stepper
    loss: Loss
    order: DataOrder
    grid: Grid
    schedule: Schedule
    n_measured: int
    planned_lines: int
    ranks: Ranks = SINGLE
    threads: ThreadChoice = ThreadChoice(1, "config", 1)

    @property
    def train(self) -> tuple[Tensor, Tensor]:
        """The whole training subset ``(inputs, targets)`` on the device."""
        return self.order.inputs, self.order.targets

    @property
    def sample_ids(self) -> dict:
        """``{"train": [n_measured], "val": [N_val]}`` int64 stable ids of the measured sets."""
        return {"train": self.dataset.train.ids[:self.n_measured].numpy(), "val": self.dataset.val.ids.numpy()}


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).

    Raises:
        ValueError: ``"cuda"`` without a CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("config key 'device': 'cuda' requested but no CUDA device is available; use device = 'cpu'")
    return torch.device(name)


def build_parts(cfg: RunConfig, ranks: Ranks = SINGLE) -> RunParts:
    """Build every part of the run ``cfg`` describes (see :class:`RunParts`); with several
    processes every one builds the same parts (training is replicated).

    Raises:
        ValueError / FileNotFoundError: an unknown name, a missing dataset, impossible sizes.
    """
    threads = apply_threads(cfg.threads)  # logged by the driver once the run is under way
    device = ranks.device if ranks.sharded else resolve_device(cfg.device)
    d = cfg.data
    dataset = load_dataset(d.name, root=d.root or None, fraction=d.fraction, n_val=d.n_val, seed=d.seed,
                           normalize=d.normalize, download=d.download, **d.options)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, num_classes=dataset.num_classes, input_shape=dataset.input_shape,
                        width=cfg.model.width, **cfg.model.options).to(device)
    stepper = Stepper(cfg, model)
    train = dataset.train.to(device)
    order = DataOrder(train.inputs, train.targets, cfg.train.batch_size, seed=cfg.seed, augment=d.augment)
    n_train = len(dataset.train)
    n_measured = cfg.measure.n_train or n_train
    if n_measured > n_train:
        raise ValueError(f"config key 'measure.n_train': {n_measured} exceeds the {n_train} training samples")
    m = cfg.measure
    grid = make_grid(m.spacing, m.half_width, m.max_enlargements)
    if m.schedule == "every":
        schedule = make_schedule("every", period=m.every, offset=m.offset)
    elif m.schedule == "log":
        schedule = make_schedule("log", n=m.count, total_steps=cfg.train.steps)
    else:
        schedule = make_schedule("list", steps=m.at)
    return RunParts(cfg=cfg, device=device, dataset=dataset, model=model, stepper=stepper, loss=get_loss(m.loss),
                    order=order, grid=grid, schedule=schedule, n_measured=n_measured,
                    planned_lines=len(schedule.steps(cfg.train.steps)), ranks=ranks, threads=threads)


def build_sampler(parts: RunParts, sink: LineSink) -> LineSampler:
    """The run's ``LineSampler``: validates every measurement setting, then opens ``sink``.

    Raises:
        ValueError: a measurement setting the evaluator refuses (the sink is not opened).
    """
    m, (train_x, train_y), ranks = parts.cfg.measure, parts.train, parts.ranks
    val = parts.dataset.val.to(parts.device)
    sets = {"train": (batched.take(train_x, slice(0, parts.n_measured)), batched.take(train_y, slice(0, parts.n_measured)))}
    if len(val):
        sets["val"] = (val.inputs, val.targets)
    shards = {}
    if ranks.sharded:  # this process measures its range of whole BatchNorm groups of each set
        unit = m.bn_group if m.bn == "batch" else 1
        for split, (x, y) in list(sets.items()):
            n = batched.rows(x)
            start, stop = plan_shards(n, ranks.world, unit)[ranks.rank]
            sets[split] = (batched.take(x, slice(start, stop)), batched.take(y, slice(start, stop)))
            shards[split] = (start, n)
    return LineSampler(
        parts.model, grid=parts.grid, schedule=parts.schedule, train=sets["train"], val=sets.get("val"),
        shards=shards or None, reduce=ranks.all_sum if ranks.sharded else None,
        bn=m.bn, bn_group=m.bn_group, loss=parts.loss, sample_losses=tuple(s for s in SPLITS if s in m.sample_losses),
        sink=sink, strategy=m.strategy, batch_size=parts.cfg.train.batch_size, memory_budget=memory_budget(m),
        check_sgd_slope=not active_dropout(parts.model), dropout=m.dropout, dropout_seed=parts.cfg.seed,
        per_step=m.per_step, precision=m.precision, nodes=reduced_nodes(m),
        train_ids=None if ranks.sharded else parts.sample_ids["train"],
    )


def reduced_nodes(m) -> str | ReducedNodes:
    """The sampler's ``nodes`` for ``measure.nodes`` (``engine.reduced``)."""
    if m.nodes == "dense":
        return "dense"
    return ReducedNodes(n_nodes=m.chebyshev_nodes, n_checks=m.check_points, max_error=m.max_interpolation_error,
                        max_sample_error=m.max_sample_interpolation_error)

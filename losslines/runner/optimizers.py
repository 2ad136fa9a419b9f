"""Optimizers by name, and the training step behind one interface (``Stepper``).

A config names its optimizer (``train.optimizer``); the registry maps the name to a builder
``build(params, train_config) -> torch.optim.Optimizer``. Registering a new optimizer is one call,
``register_optimizer("lion", build)``; a config may then say ``optimizer = "lion"`` (with
``measure.direction = "step"``: the line follows whatever step it takes).

``measure.direction = "sgd"`` is the paper's SGD_LS: losslines computes ``u = −λ·buf`` itself
(``engine.directions.SGDDirection``) instead of a torch optimizer; ``Stepper`` hides which.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from losslines.engine.directions import DirectionSource, SGDDirection
from losslines.runner.config import RunConfig, TrainConfig

Builder = Callable[[Iterable[nn.Parameter], TrainConfig], torch.optim.Optimizer]

_OPTIMIZERS: dict[str, Builder] = {}


def register_optimizer(name: str, build: Builder) -> None:
    """Add an optimizer under ``name`` (re-registering replaces it): ``build(params, train)``
    returns a ``torch.optim.Optimizer`` over ``params`` configured from the ``[train]`` table."""
    _OPTIMIZERS[name] = build


def optimizer_names() -> tuple[str, ...]:
    """The registered optimizer names (valid values of ``train.optimizer``)."""
    return tuple(_OPTIMIZERS)


def build_optimizer(name: str, params: Iterable[nn.Parameter], train: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``params``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    if name not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(_OPTIMIZERS)}")
    return _OPTIMIZERS[name](params, train)


register_optimizer("sgd", lambda params, t: torch.optim.SGD(
    params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay))
register_optimizer("adam", lambda params, t: torch.optim.Adam(
    params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay))
register_optimizer("adamw", lambda params, t: torch.optim.AdamW(
    params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay))


class Stepper:
    """The training step of a run: the losslines SGD direction or a registered torch optimizer.

    Attributes:
        source: what ``LineSampler.measure`` takes the direction from (the ``SGDDirection`` or
            the torch optimizer).
    """

    def __init__(self, cfg: RunConfig, model: nn.Module):
        t = cfg.train
        self._sgd: SGDDirection | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        if cfg.measure.direction == "sgd":
            self._sgd = SGDDirection(model, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        else:
            self._optimizer = build_optimizer(t.optimizer, model.parameters(), t)
        self._model = model

    @property
    def source(self) -> DirectionSource | torch.optim.Optimizer:
        return self._sgd if self._sgd is not None else self._optimizer  # type: ignore[return-value]

    def set_lr(self, lr: float) -> None:
        """Set the learning rate λ of the next step (every parameter group)."""
        if self._sgd is not None:
            self._sgd.lr = lr
        else:
            for group in self._optimizer.param_groups:  # type: ignore[union-attr]
                group["lr"] = lr

    def zero_grad(self) -> None:
        self._model.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.source.step()

    def state_dict(self) -> dict:
        return self.source.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.source.load_state_dict(state)

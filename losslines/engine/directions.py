"""Where a line points: the update ``u = θ_{t+1} − θ_t`` of one training step (docs/design.md, "The measurement").

A direction source implements two hooks around the training step of a measured line:
``begin()`` (snapshot θ_t, returned to the caller) and ``end()`` (after the step: the
``Direction`` taken). Two sources exist:

* ``SGDDirection`` — the paper's own SGD (optionally heavy-ball/Nesterov momentum, weight decay),
  computed by losslines from the parameters' ``.grad``: ``u = −λ·buf`` exactly, and
  ``direction_norm = ‖buf‖`` computed directly (not from a difference of parameters). Its
  ``step()`` is the training step; it follows ``torch.optim.SGD``'s update rule op for op.
* ``OptimizerStepDirection`` — any ``torch.optim`` optimizer: ``u = θ_{t+1} − θ_t`` from a
  snapshot taken in ``begin()``; works unchanged for Adam, AdamW, Nesterov, weight decay, ...
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Direction:
    """The update of one step.

    Attributes:
        vector: ``u`` per trainable parameter name (shapes and dtypes of the parameters,
            detached); parameters the step did not move hold zeros.
        update_step: ``‖u‖`` (float64 accumulation): the distance along û the optimizer moved.
        direction_norm: ``‖u‖ / λ`` (= ‖g‖ for plain SGD, ‖buf‖ with momentum).
        lr: the learning rate λ of the step (``param_groups[0]["lr"]`` for torch optimizers).
    """

    vector: dict[str, Tensor]
    update_step: float
    direction_norm: float
    lr: float


FLOAT64_CHUNK = 1 << 22  # elements of a float64 temporary (32 MiB): bounds the extra memory of large tensors


def row_chunks(t: Tensor) -> list[slice]:
    """Slices along dim 0 holding at most ``FLOAT64_CHUNK`` elements each (one slice for a 0-d or
    small tensor), so float64 work on a huge tensor never needs a float64 copy of all of it."""
    if t.dim() == 0 or t.numel() <= FLOAT64_CHUNK:
        return [slice(None)]
    rows = max(1, FLOAT64_CHUNK // max(1, t[0].numel()))
    return [slice(i, i + rows) for i in range(0, t.shape[0], rows)]


def tensor_norm(tensors: Iterable[Tensor]) -> float:
    """Euclidean norm of the concatenation of ``tensors``, accumulated in float64 (in chunks of
    at most ``FLOAT64_CHUNK`` elements: memory beyond the tensors stays bounded)."""
    total = None
    for t in tensors:
        t = t.detach()
        for rows in row_chunks(t):
            part = torch.sum(t[rows].to(torch.float64) ** 2)
            total = part if total is None else total + part
    return math.sqrt(float(total)) if total is not None else 0.0


def trainable_parameters(model_or_params: nn.Module | Iterable[tuple[str, nn.Parameter]]) -> dict[str, nn.Parameter]:
    """``{name: parameter}`` of the parameters with ``requires_grad`` (in ``named_parameters`` order)."""
    items = model_or_params.named_parameters() if isinstance(model_or_params, nn.Module) else model_or_params
    out = {}
    for name, p in items:
        if not isinstance(p, Tensor):
            raise ValueError(f"expected (name, parameter) pairs, got {type(p).__name__} for {name!r}")
        if p.requires_grad:
            out[name] = p
    if not out:
        raise ValueError("no trainable parameters (requires_grad=True) to define a direction over")
    return out


def snapshot(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached copies of ``params`` (θ_t), same dtypes and devices."""
    return {name: p.detach().clone() for name, p in params.items()}


class DirectionSource(ABC):
    """A source of update directions: hooks around one training step.

    Subclasses implement ``_end`` (and may override ``begin``). ``params`` are the trainable
    parameters the source moves, by name.
    """

    def __init__(self, params: Mapping[str, nn.Parameter]):
        self.params = dict(params)
        self._theta_t: dict[str, Tensor] | None = None

    def begin(self) -> dict[str, Tensor]:
        """Snapshot θ_t before the step of a measured line; returns the snapshot."""
        self._theta_t = snapshot(self.params)
        return self._theta_t

    def end(self) -> Direction:
        """The step's ``Direction``; call after the step, once per ``begin``.

        Raises:
            RuntimeError: ``begin`` was not called first.
        """
        if self._theta_t is None:
            raise RuntimeError(f"{type(self).__name__}.end() called without begin()")
        try:
            return self._end(self._theta_t)
        finally:
            self._theta_t = None

    def abort(self) -> None:
        """Forget the snapshot (the step failed)."""
        self._theta_t = None

    @abstractmethod
    def _end(self, theta_t: dict[str, Tensor]) -> Direction:
        """Build the ``Direction`` of the step that started at ``theta_t``."""


class OptimizerStepDirection(DirectionSource):
    """``u = θ_{t+1} − θ_t`` of whatever step a torch optimizer takes.

    Args:
        optimizer: any ``torch.optim.Optimizer``; the step itself stays the caller's
            ``optimizer.step()``.
        model: the model (or its ``named_parameters()``) — gives the parameter names.

    The reported ``lr`` is ``optimizer.param_groups[0]["lr"]``. With several parameter groups of
    different learning rates, ``direction_norm = ‖u‖/lr`` is relative to that first group's rate;
    the line itself (along û) is exact regardless.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module | Iterable[tuple[str, nn.Parameter]]):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        super().__init__(trainable_parameters(model))
        self.optimizer = optimizer

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _end(self, theta_t: dict[str, Tensor]) -> Direction:
        vector = {name: (p.detach() - theta_t[name]) for name, p in self.params.items()}
        update_step = tensor_norm(vector.values())
        lr = self.lr
        norm = update_step / lr if lr != 0 else float("nan")
        return Direction(vector=vector, update_step=update_step, direction_norm=norm, lr=lr)


class SGDDirection(DirectionSource):
    """The paper's SGD (SGD_LS): ``u = −λ·buf`` computed from ``.grad``, and the step itself.

    Update rule (identical to ``torch.optim.SGD`` with ``maximize=False``)::

        d   = g + weight_decay · θ
        buf = d                                  (first step, or momentum = 0)
        buf = momentum · buf + (1 − dampening) · d
        v   = d + momentum · buf   if nesterov else buf
        θ  ← θ − λ · v

    The ``Direction`` of a step is ``u = −λ·v`` (so û = −v/‖v‖ exactly) with
    ``direction_norm = ‖v‖`` and ``update_step = λ‖v‖``.

    Args:
        params: the model, or its ``named_parameters()``; parameters without ``requires_grad``
            are not moved.
        lr: learning rate λ (>= 0); settable between steps (``source.lr = ...``) by a schedule.
        momentum, dampening, nesterov, weight_decay: as in ``torch.optim.SGD``.

    Raises:
        ValueError: negative lr/momentum/weight_decay, Nesterov without momentum or with
            dampening.
    """

    def __init__(self, params: nn.Module | Iterable[tuple[str, nn.Parameter]], lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(trainable_parameters(params))
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"momentum ({momentum}) and weight_decay ({weight_decay}) must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0")
        self.lr = lr
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.buffers: dict[str, Tensor] = {}
        self.steps_taken = 0
        self.last_direction: Direction | None = None
        self._steps_at_begin = 0

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"learning rate must be finite and >= 0, got {value}")
        self._lr = value

    @torch.no_grad()
    def step(self) -> Direction:
        """Take one SGD step from the current ``.grad``; returns (and keeps) its ``Direction``.

        Raises:
            RuntimeError: a trainable parameter has no ``.grad`` (call ``backward()`` first).
        """
        missing = [name for name, p in self.params.items() if p.grad is None]
        if missing:
            raise RuntimeError(f"SGDDirection.step(): no .grad for {missing[:3]}...; call loss.backward() first")
        velocity = {}
        for name, p in self.params.items():
            d = p.grad
            if self.weight_decay != 0:
                d = d.add(p, alpha=self.weight_decay)
            if self.momentum != 0:
                buf = self.buffers.get(name)
                if buf is None:
                    buf = torch.clone(d).detach()
                    self.buffers[name] = buf
                else:
                    buf.mul_(self.momentum).add_(d, alpha=1 - self.dampening)
                d = d.add(buf, alpha=self.momentum) if self.nesterov else buf
            velocity[name] = d
        norm = tensor_norm(velocity.values())
        vector = {name: v.mul(-self.lr) for name, v in velocity.items()}
        for name, p in self.params.items():
            p.add_(velocity[name], alpha=-self.lr)
        self.steps_taken += 1
        self.last_direction = Direction(vector=vector, update_step=self.lr * norm, direction_norm=norm, lr=self.lr)
        return self.last_direction

    def begin(self) -> dict[str, Tensor]:
        self._steps_at_begin = self.steps_taken
        return super().begin()

    def _end(self, theta_t: dict[str, Tensor]) -> Direction:
        taken = self.steps_taken - self._steps_at_begin
        if taken != 1 or self.last_direction is None:
            raise RuntimeError(
                f"SGDDirection: expected exactly one step() inside the measured block, got {taken}"
            )
        return self.last_direction

    def state_dict(self) -> dict:
        """Hyper-parameters, step count and momentum buffers (cloned), for checkpoints."""
        return {
            "lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
            "nesterov": self.nesterov, "weight_decay": self.weight_decay, "steps_taken": self.steps_taken,
            "buffers": {name: b.detach().clone() for name, b in self.buffers.items()},
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore ``state_dict()`` output; buffers are copied onto the parameters' devices.

        Raises:
            ValueError: buffers for unknown parameters or of the wrong shape.
        """
        unknown = set(state["buffers"]) - set(self.params)
        if unknown:
            raise ValueError(f"SGDDirection state has buffers for unknown parameters {sorted(unknown)[:3]}")
        buffers = {}
        for name, b in state["buffers"].items():
            p = self.params[name]
            if b.shape != p.shape:
                raise ValueError(f"SGDDirection buffer {name!r} has shape {tuple(b.shape)}, parameter {tuple(p.shape)}")
            buffers[name] = b.detach().to(device=p.device, dtype=p.dtype).clone()
        self.lr = state["lr"]
        self.momentum = float(state["momentum"])
        self.dampening = float(state["dampening"])
        self.nesterov = bool(state["nesterov"])
        self.weight_decay = float(state["weight_decay"])
        self.steps_taken = int(state["steps_taken"])
        self.buffers = buffers


class SourceResolver:
    """What a measured block was given as ``source``, as a ``DirectionSource``: a direction
    source as it is (it must move exactly the model's trainable parameters), a torch optimizer
    wrapped in an ``OptimizerStepDirection`` on first use and the same wrapper ever after (the
    sampler's and the recorder's ``measure(step, source, ...)``)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._trainable = list(trainable_parameters(model))  # names
        self._wrapped: list[tuple[torch.optim.Optimizer, OptimizerStepDirection]] = []

    def __call__(self, source) -> DirectionSource:
        """Raises:
            ValueError: not an optimizer or a direction source, or one that moves other parameters.
        """
        if isinstance(source, torch.optim.Optimizer):
            for opt, wrapper in self._wrapped:
                if opt is source:
                    return wrapper
            wrapper = OptimizerStepDirection(source, self.model)
            self._wrapped.append((source, wrapper))
            return wrapper
        if isinstance(source, DirectionSource):
            if list(source.params) != self._trainable:
                raise ValueError("the direction source moves other parameters than the model's trainable ones")
            return source
        raise ValueError(f"source must be a torch.optim.Optimizer or a DirectionSource, got {type(source).__name__}")

"""One line through parameter space, ``θ(s) = θ_t + s·û``, as a pure function of s (docs/design.md, "The measurement").

``LinePoints`` binds a model to θ_t and the direction u and evaluates the model at any s with
``torch.func.functional_call``: every point is built from the pristine θ_t, never by moving the
model's parameters. Each point is rounded once from float64, tensor by tensor
(``fl(θ_t + (s/‖u‖)·u)``), so ``θ(0) == θ_t`` bit for bit and no rounding accumulates with |s|;
no float64 copy of the whole model is ever held.
The model's own parameters and buffers are never handed to the forward: buffers are copied once,
so a train-mode BatchNorm forward updates the copies' running statistics, not the model's.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from losslines import batched
from losslines.engine.directions import row_chunks, tensor_norm
from losslines.engine.rng import seeded


def _as_direction_dict(direction, trainable: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Direction as ``{name: tensor}`` over the trainable parameters (missing names = zero)."""
    if isinstance(direction, Tensor):
        total = sum(p.numel() for p in trainable.values())
        if direction.dim() != 1 or direction.numel() != total:
            raise ValueError(
                f"a flat direction must be 1-D with {total} entries (the trainable parameters in "
                f"named_parameters() order), got shape {tuple(direction.shape)}"
            )
        out, offset = {}, 0
        for name, p in trainable.items():
            out[name] = direction[offset: offset + p.numel()].view(p.shape)
            offset += p.numel()
        return out
    if not isinstance(direction, Mapping):
        raise ValueError(f"direction must be a mapping name -> tensor or a flat tensor, got {type(direction).__name__}")
    extra = sorted(set(direction) - set(trainable))
    if extra:
        raise ValueError(f"direction has entries {extra[:3]} that are not trainable parameters of the model")
    out = {}
    for name, p in trainable.items():
        d = direction.get(name)
        if d is None:
            out[name] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            continue
        if tuple(d.shape) != tuple(p.shape):
            raise ValueError(f"direction[{name!r}] has shape {tuple(d.shape)}, parameter has {tuple(p.shape)}")
        out[name] = d
    return out


class LinePoints:
    """The model restricted to the line ``θ_t + s·û``.

    Memory: the line keeps references to θ_t and to the direction as given (no copies; a copy
    only where a dtype, device or memory layout must change) and the scale ``1/‖u‖``. A point's
    parameters are built tensor by tensor, each rounded once from a transient float64 of that one
    tensor, ``fl(θ_t + (s/‖u‖)·u)``: beyond θ_t and u a line needs one parameter set in the
    model's dtype (the point the forward runs at) plus float64 temporaries of one tensor, for any
    model size and dtype (float32, bfloat16, float16; float64 models are exact).

    Args:
        model: the model; only read (its parameters, buffers and names).
        direction: ``{name: tensor}`` over trainable parameters (missing = 0) or a flat vector
            in ``named_parameters()`` order of the trainable parameters; any scale.
        params: optional θ_t for some or all parameters (default: the model's current values).
        buffers: optional buffer values (default: the model's current buffers); always copied.
        channels_last: hold 4-D parameters (convolution weights) in channels-last layout, so
            every point's parameters are channels-last too (same values; faster convolutions on
            CPU with channels-last inputs).
        seed: run every forward from this random state (``engine.rng.seeded``): with train-mode
            dropout, the same mask at every point. None: the generators as they are.

    Attributes:
        direction_length: ‖direction‖ as given (float64).
        params_norm: ‖θ_t‖ over the trainable parameters (float64).
        dtype, device: of the trainable parameters (the dtype the model runs in).

    Raises:
        ValueError: zero or non-finite direction, unknown names, mismatched shapes.
    """

    def __init__(self, model: nn.Module, direction, *, params: Mapping[str, Tensor] | None = None,
                 buffers: Mapping[str, Tensor] | None = None, channels_last: bool = False,
                 seed: int | None = None):
        self.model, self.seed = model, seed
        named = dict(model.named_parameters())
        trainable = {n: p for n, p in named.items() if p.requires_grad}
        if not trainable:
            raise ValueError("the model has no trainable parameters (requires_grad=True)")
        params = dict(params or {})
        unknown = sorted(set(params) - set(named))
        if unknown:
            raise ValueError(f"params has entries {unknown[:3]} that are not parameters of the model")
        theta = {}
        for name, p in named.items():
            value = params.get(name, p).detach()
            if value.shape != p.shape:
                raise ValueError(f"params[{name!r}] has shape {tuple(value.shape)}, parameter has {tuple(p.shape)}")
            theta[name] = value.to(device=p.device, dtype=p.dtype)
        first = next(iter(trainable.values()))
        self.dtype, self.device = first.dtype, first.device
        vector = _as_direction_dict(direction, trainable)
        self.direction_length = tensor_norm(vector.values())
        if not math.isfinite(self.direction_length):
            raise ValueError("the direction contains NaN or inf")
        if self.direction_length == 0.0:
            raise ValueError("the direction is zero (the step did not move the parameters); "
                             "a line needs a non-zero update direction")
        self.names = list(trainable)
        self.frozen = {n: v for n, v in theta.items() if n not in trainable}
        layout = torch.channels_last if channels_last else None
        self.theta = {n: _laid_out(theta[n], layout) for n in self.names}
        self.u = {n: _laid_out(vector[n].detach().to(device=theta[n].device, dtype=theta[n].dtype), layout)
                  for n in self.names}
        self.scale = 1.0 / self.direction_length  # û = scale · u
        self.params_norm = tensor_norm(self.theta.values())
        given = dict(buffers or {})
        own = dict(model.named_buffers())
        unknown = sorted(set(given) - set(own))
        if unknown:
            raise ValueError(f"buffers has entries {unknown[:3]} that are not buffers of the model")
        self.buffers = {n: given.get(n, b).detach().clone() for n, b in own.items()}

    def point(self, name: str, s) -> Tensor:
        """Parameter ``name`` at distance ``s`` along û, rounded once to its dtype:
        ``fl(θ_t + (s/‖u‖)·u)`` from float64 temporaries of this one tensor. ``s`` is a float or
        a 0-d float64 tensor (also a batched one under ``vmap``); both give the same bits."""
        theta, u = self.theta[name], self.u[name]
        c = s * self.scale
        if not isinstance(c, float):  # a tensor s (vmap): the whole tensor at once, batched
            if theta.dtype == torch.float64:
                return theta + c * u
            return (c * u.to(torch.float64) + theta.to(torch.float64)).to(theta.dtype)
        out = torch.empty_like(theta)
        for rows in row_chunks(theta):  # float64 temporaries of at most FLOAT64_CHUNK elements
            if theta.dtype == torch.float64:
                out[rows] = theta[rows] + c * u[rows]
            else:  # c·u, then + θ, in one temporary, rounded once
                out[rows] = u[rows].to(torch.float64).mul_(c).add_(theta[rows])
        return out

    def params_at(self, s: float) -> dict[str, Tensor]:
        """All parameters at distance ``s`` (float) along û, in the parameters' dtypes."""
        out = {n: self.point(n, float(s)) for n in self.names}
        out.update(self.frozen)
        return out

    def forward(self, s: float, x):
        """Model output at ``θ(s)`` for inputs ``x`` (a tensor or a tuple/dict of tensors; the
        caller chooses grad mode and module modes)."""
        with seeded(self.seed, self.device):
            return batched.call(self.model, x, (self.params_at(s), self.buffers))

    def forward_tangent(self, x):
        """Model output at θ_t whose forward-mode tangent is the derivative along ``u`` (call
        inside ``torch.autograd.forward_ad.dual_level()``): every parameter is the dual number
        ``(θ_t, u)``, built on the tensors the line already holds (no new parameter-sized
        memory). The derivative along the unit direction is that tangent times ``self.scale``."""
        params = {n: forward_ad.make_dual(self.theta[n], self.u[n]) for n in self.names}
        params.update(self.frozen)
        with seeded(self.seed, self.device):
            return batched.call(self.model, x, (params, self.buffers))


def _laid_out(t: Tensor, layout) -> Tensor:
    return t.contiguous(memory_format=layout) if layout is not None and t.dim() == 4 else t

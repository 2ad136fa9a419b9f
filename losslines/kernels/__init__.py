"""Loss-reduction kernels and the dispatch between them.

Every backend implements ``reduce_loss(logits, targets, *, loss, lines) -> LossReduction`` with
the semantics of ``kernels.reference`` (its plain-PyTorch oracle). ``"torch"`` is the reference;
a fused Triton kernel registers itself beside it as ``"triton"``. ``backend="auto"`` picks the
first available entry of ``AUTO_ORDER`` for the logits' device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from losslines.kernels.reference import LOSSES, LossReduction, check_loss
from losslines.kernels.reference import reduce_loss as reduce_loss_torch

__all__ = ["LOSSES", "LossReduction", "Backend", "register_backend", "backend_names",
           "resolve_backend", "reduce_loss", "reduce_loss_torch", "check_loss", "AUTO_ORDER"]


@dataclass(frozen=True)
class Backend:
    """One loss-reduction implementation.

    Attributes:
        name: registry name ("torch", "triton", ...).
        fn: ``fn(logits, targets, *, loss, lines) -> LossReduction``.
        available: ``available(logits) -> bool``: can this backend handle these logits (device,
            dtype, installed libraries)?
    """

    name: str
    fn: Callable[..., LossReduction]
    available: Callable[[Tensor], bool]


_BACKENDS: dict[str, Backend] = {}
# "auto" tries these in order; a later issue puts "triton" in front of "torch".
AUTO_ORDER: list[str] = ["torch"]


def register_backend(name: str, fn: Callable[..., LossReduction],
                     available: Callable[[Tensor], bool] = lambda logits: True) -> None:
    """Add a backend under ``name`` (re-registering a name replaces it)."""
    if name == "auto":
        raise ValueError("'auto' is reserved for the dispatch itself; pick another backend name")
    _BACKENDS[name] = Backend(name, fn, available)


def backend_names() -> tuple[str, ...]:
    """Valid values of ``backend``: "auto" and every registered name."""
    return ("auto",) + tuple(_BACKENDS)


def resolve_backend(backend: str, logits: Tensor) -> Backend:
    """The ``Backend`` that ``reduce_loss(..., backend=backend)`` would use for ``logits``.

    Raises:
        ValueError: unknown name (the message lists valid names), or a named backend that is
            not available for these logits.
    """
    if backend == "auto":
        for name in AUTO_ORDER:
            entry = _BACKENDS.get(name)
            if entry is not None and entry.available(logits):
                return entry
        raise ValueError(f"no loss-reduction backend available for {logits.device} {logits.dtype}")
    if backend not in _BACKENDS:
        raise ValueError(f"unknown loss backend {backend!r}; valid backends: {', '.join(backend_names())}")
    entry = _BACKENDS[backend]
    if not entry.available(logits):
        raise ValueError(f"loss backend {backend!r} is not available for {logits.device} {logits.dtype} logits")
    return entry


def reduce_loss(logits: Tensor, targets: Tensor, *, loss: str = "cross_entropy", lines: int = 1,
                backend: str = "auto") -> LossReduction:
    """Per-sample losses, float64 per-point sums and correct counts (see ``kernels.reference``).

    Args:
        logits: ``[lines * n, C]`` line-major model outputs.
        targets: ``[lines * n]`` class indices or ``[lines * n, C]`` regression targets.
        loss: ``"cross_entropy"`` or ``"mse"``.
        lines: number of points stacked in ``logits``.
        backend: ``"auto"`` or a registered backend name.

    Raises:
        ValueError: unknown loss or backend (messages list the valid names), bad shapes.
    """
    check_loss(loss)
    return resolve_backend(backend, logits).fn(logits, targets, loss=loss, lines=lines)


register_backend("torch", reduce_loss_torch)

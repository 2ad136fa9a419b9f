"""Loss-reduction kernels and the dispatch between them.

Every backend implements ``reduce_loss(logits, targets, *, loss, lines) -> LossReduction`` with
the semantics of ``kernels.reference`` (its plain-PyTorch oracle). ``"torch"`` is the reference;
``"triton"`` (``kernels.triton_backend``) runs fused Triton kernels for cross-entropy and MSE.
``backend="auto"`` picks the first entry of ``AUTO_ORDER`` that is *automatic* for the logits:
Triton for CUDA logits (float32/float16/bfloat16, no autograd), the torch reference otherwise.
A named backend is used whenever it is *available*; ``"triton"`` is also available for CPU
logits when ``TRITON_INTERPRET=1`` is set (Triton's interpreter: slow, for tests only, so
"auto" never picks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from losslines.kernels.reference import LOSSES, LossReduction, check_loss
from losslines.kernels.reference import reduce_loss as reduce_loss_torch
from losslines.kernels.triton_backend import TRITON_REQUIREMENT, reduce_loss_triton, triton_automatic, triton_available

__all__ = ["LOSSES", "LossReduction", "Backend", "register_backend", "backend_names",
           "resolve_backend", "reduce_loss", "reduce_loss_torch", "reduce_loss_triton", "check_loss", "AUTO_ORDER"]


@dataclass(frozen=True)
class Backend:
    """One loss-reduction implementation.

    Attributes:
        name: registry name ("torch", "triton", ...).
        fn: ``fn(logits, targets, *, loss, lines) -> LossReduction``.
        available: ``available(logits) -> bool``: can this backend handle these logits (device,
            dtype, installed libraries)? A forced ``backend=name`` needs it.
        automatic: ``automatic(logits) -> bool``: may ``backend="auto"`` pick it for these logits
            (implies ``available``; false e.g. for an emulator that is correct but slow).
        requirement: what ``available`` asks for, in words (shown when it refuses).
    """

    name: str
    fn: Callable[..., LossReduction]
    available: Callable[[Tensor], bool]
    automatic: Callable[[Tensor], bool]
    requirement: str = ""


_BACKENDS: dict[str, Backend] = {}
# "auto" tries these in order: the fused kernel where it is automatic (CUDA), else the reference.
AUTO_ORDER: list[str] = ["triton", "torch"]


def _always(logits: Tensor) -> bool:
    return True


def register_backend(name: str, fn: Callable[..., LossReduction],
                     available: Callable[[Tensor], bool] = _always,
                     automatic: Callable[[Tensor], bool] | None = None, requirement: str = "") -> None:
    """Add a backend under ``name`` (re-registering a name replaces it).

    ``automatic`` defaults to ``available``; ``requirement`` describes ``available`` in words.
    """
    if name == "auto":
        raise ValueError("'auto' is reserved for the dispatch itself; pick another backend name")
    _BACKENDS[name] = Backend(name, fn, available, available if automatic is None else automatic, requirement)


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
            if entry is not None and entry.automatic(logits):
                return entry
        raise ValueError(f"no loss-reduction backend available for {logits.device} {logits.dtype}")
    if backend not in _BACKENDS:
        raise ValueError(f"unknown loss backend {backend!r}; valid backends: {', '.join(backend_names())}")
    entry = _BACKENDS[backend]
    if not entry.available(logits):
        needs = f"; it needs {entry.requirement}" if entry.requirement else ""
        raise ValueError(f"loss backend {backend!r} is not available for {logits.device} {logits.dtype} "
                         f"logits{needs}; use backend='auto' or 'torch'")
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


register_backend("torch", reduce_loss_torch, requirement="any logits")
register_backend("triton", reduce_loss_triton, available=triton_available, automatic=triton_automatic,
                 requirement=TRITON_REQUIREMENT)

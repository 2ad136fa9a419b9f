"""Loss-reduction kernels, each beside its plain-PyTorch reference, and the backends that run them.

* ``kernels.reference``: the per-sample losses in plain PyTorch (the oracles) and
  :class:`LossReduction`, what every kernel returns.
* ``kernels.triton_backend`` with ``triton_cross_entropy`` / ``triton_mse``: fused Triton kernels.
* The backend registry below says *where* a backend can run: ``"torch"`` (the reference) runs
  anything; ``"triton"`` runs CUDA float32/float16/bfloat16 outputs without autograd, and CPU
  outputs in Triton's interpreter (``TRITON_INTERPRET=1``: slow, for tests; never automatic).

*Which* kernel a loss has on which backend is the loss record's business: ``losslines.losses``
holds the loss registry and the dispatch ``reduce_loss``, which consults both registries.
``backend="auto"`` takes the first entry of ``AUTO_ORDER`` that is automatic for the outputs and
has a kernel for the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from losslines.kernels.reference import LossReduction, cross_entropy_reference, mse_reference
from losslines.kernels.triton_backend import TRITON_REQUIREMENT, triton_automatic, triton_available

__all__ = ["LossReduction", "Backend", "register_backend", "backend_names", "resolve_backend",
           "backend_is_automatic", "AUTO_ORDER", "cross_entropy_reference", "mse_reference"]


@dataclass(frozen=True)
class Backend:
    """Where one family of loss kernels can run.

    Attributes:
        name: registry name ("torch", "triton", ...).
        available: ``available(outputs) -> bool``: can this backend handle these outputs (device,
            dtype, installed libraries)? A forced ``backend=name`` needs it.
        automatic: ``automatic(outputs) -> bool``: may ``backend="auto"`` pick it for these
            outputs (implies ``available``; false e.g. for an emulator that is correct but slow).
        requirement: what ``available`` asks for, in words (shown when it refuses).
    """

    name: str
    available: Callable[[Tensor], bool]
    automatic: Callable[[Tensor], bool]
    requirement: str = ""


_BACKENDS: dict[str, Backend] = {}
# "auto" tries these in order: the fused kernel where it is automatic (CUDA), else the reference.
AUTO_ORDER: list[str] = ["triton", "torch"]


def _always(outputs: Tensor) -> bool:
    return True


def register_backend(name: str, available: Callable[[Tensor], bool] = _always,
                     automatic: Callable[[Tensor], bool] | None = None, requirement: str = "") -> None:
    """Add a backend under ``name`` (re-registering a name replaces it); losses add kernels for
    it with ``losslines.losses.register_kernel``.

    ``automatic`` defaults to ``available``; ``requirement`` describes ``available`` in words.
    """
    if name == "auto":
        raise ValueError("'auto' is reserved for the dispatch itself; pick another backend name")
    _BACKENDS[name] = Backend(name, available, available if automatic is None else automatic, requirement)


def backend_names() -> tuple[str, ...]:
    """Valid values of ``backend``: "auto" and every registered name."""
    return ("auto",) + tuple(_BACKENDS)


def backend_is_automatic(name: str, outputs: Tensor) -> bool:
    """May ``backend="auto"`` pick the registered backend ``name`` for these outputs?"""
    entry = _BACKENDS.get(name)
    return entry is not None and entry.automatic(outputs)


def resolve_backend(backend: str, outputs: Tensor) -> Backend:
    """The registered ``Backend`` named ``backend``, checked to be available for ``outputs``;
    for ``"auto"``, the first entry of ``AUTO_ORDER`` that is automatic for them (whether a given
    loss has a kernel there is ``losslines.losses.select_kernel``'s question).

    Raises:
        ValueError: unknown name (the message lists valid names), or a backend that is not
            available for these outputs.
    """
    if backend == "auto":
        for name in AUTO_ORDER:
            if backend_is_automatic(name, outputs):
                return _BACKENDS[name]
        raise ValueError(f"no loss backend is automatic for {outputs.device} {outputs.dtype} outputs")
    if backend not in _BACKENDS:
        raise ValueError(f"unknown loss backend {backend!r}; valid backends: {', '.join(backend_names())}")
    entry = _BACKENDS[backend]
    if not entry.available(outputs):
        needs = f"; it needs {entry.requirement}" if entry.requirement else ""
        raise ValueError(f"loss backend {backend!r} is not available for {outputs.device} {outputs.dtype} "
                         f"outputs{needs}; use backend='auto' or 'torch'")
    return entry


register_backend("torch", requirement="any outputs")
register_backend("triton", available=triton_available, automatic=triton_automatic, requirement=TRITON_REQUIREMENT)

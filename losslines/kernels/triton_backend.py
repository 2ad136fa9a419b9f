"""The ``"triton"`` loss-reduction backend: when it applies, and its kernels' host-side entries.

The loss records (``losslines.losses``) name the kernels below; a loss without a Triton kernel
is refused by a forced ``backend="triton"`` and reduced by its torch reference under ``"auto"``.

This module imports without Triton installed: the kernel modules (``triton_cross_entropy``,
``triton_mse``) and Triton itself are imported on first use only.

Where it runs. Triton decides once per process, when it is first imported, whether ``@triton.jit``
kernels (its own standard library included) are compiled or run by its interpreter: the latter
when the environment variable ``TRITON_INTERPRET`` is ``1`` (or true/yes/on) at that moment.

* Compiled process (the normal case): CUDA logits only. This is what ``backend="auto"`` picks for
  CUDA float32/float16/bfloat16 logits.
* Interpreted process (``TRITON_INTERPRET=1`` set before ``triton`` was first imported, e.g. at the
  top of a test module): CPU logits too. The interpreter executes the same kernel source with
  numpy, one program at a time: exact semantics, far too slow for measurements, so ``"auto"``
  never picks it; tests force ``backend="triton"``. ``triton_mode`` refuses loudly a process
  where Triton and these kernels were imported under different settings.

Not handled (``available`` is false, "auto" uses the torch reference, a forced ``"triton"`` is a
ValueError): float64 logits (the kernels compute in float32; the reference keeps float64), and
logits that need derivatives (autograd or forward-mode dual tensors): the kernels have none.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor
from torch.autograd import forward_ad

from losslines.kernels.reference import LossReduction

TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
TRITON_REQUIREMENT = ("the triton package and float32/float16/bfloat16 logits without autograd on a CUDA device, "
                      "or on CPU in Triton's interpreter (TRITON_INTERPRET=1 set before triton is first imported)")
_TRUE = ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def triton_installed() -> bool:
    """Whether the ``triton`` package imports (tried once, on the first question that needs it)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreter_requested() -> bool:
    """Whether ``TRITON_INTERPRET`` is set to a true value now."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in _TRUE


def triton_mode() -> str:
    """``"interpreted"`` or ``"compiled"``: how this process runs the loss kernels (imports Triton and
    the kernel modules; fixed from then on).

    Raises:
        RuntimeError: Triton's standard library and the loss kernels were imported under different
            ``TRITON_INTERPRET`` settings, so no kernel can run.
    """
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    from losslines.kernels.triton_cross_entropy import cross_entropy_kernel
    from losslines.kernels.triton_mse import mse_kernel
    from losslines.kernels.triton_token_cross_entropy import token_cross_entropy_kernel

    library = isinstance(tl.max, InterpretedFunction)
    if any(isinstance(k, InterpretedFunction) != library for k in (cross_entropy_kernel, mse_kernel, token_cross_entropy_kernel)):
        raise RuntimeError("triton was imported with TRITON_INTERPRET "
                           f"{'set' if library else 'unset'} but losslines' Triton kernels were defined with it "
                           f"{'unset' if library else 'set'}; set it (or not) before either is first imported")
    return "interpreted" if library else "compiled"


def _needs_derivatives(logits: Tensor) -> bool:
    if torch.is_grad_enabled() and logits.requires_grad:
        return True
    return forward_ad.unpack_dual(logits).tangent is not None


def triton_available(logits: Tensor) -> bool:
    """Can ``backend="triton"`` reduce these logits? (See the module docstring.)

    CUDA logits in an interpreted process are available (the interpreter copies them to the host)
    but never automatic.
    """
    if logits.dtype not in TRITON_DTYPES or _needs_derivatives(logits):
        return False
    if logits.is_cuda:
        return triton_installed()
    if logits.device.type != "cpu" or not interpreter_requested():  # no import of triton needed
        return False
    return triton_installed() and triton_mode() == "interpreted"


def triton_automatic(logits: Tensor) -> bool:
    """May ``backend="auto"`` pick Triton for these logits? Only compiled kernels on CUDA."""
    return logits.is_cuda and triton_available(logits) and triton_mode() == "compiled"


def _check_class_indices(targets: Tensor, classes: int) -> None:
    # the kernels read the target's logit directly, so an index outside [0, C) would read foreign
    # memory; one reduction and one host sync refuse it loudly instead
    if targets.numel() and bool(((targets < 0) | (targets >= classes)).any()):
        low, high = int(targets.min()), int(targets.max())
        raise ValueError(f"class-index targets must lie in [0, {classes}), got values in [{low}, {high}]")


def _checked(rows: Tensor, targets: Tensor, ignore: int | None = None) -> None:
    """What the kernels need beyond the loss's own shape check (``losslines.losses``)."""
    if not triton_available(rows):
        raise ValueError(f"the triton loss backend cannot reduce {rows.device} {rows.dtype} outputs "
                         f"(requires_grad={rows.requires_grad}); it needs {TRITON_REQUIREMENT}")
    if targets.device != rows.device:
        raise ValueError(f"targets are on {targets.device} but logits on {rows.device}; move them together")
    if not targets.is_floating_point():
        _check_class_indices(targets if ignore is None else targets[targets != ignore], rows.shape[-1])


def cross_entropy_reduction(rows: Tensor, targets: Tensor, *, lines: int, n: int) -> LossReduction:
    """The ``cross_entropy`` loss's Triton kernel: ``kernels.reference.cross_entropy_reference``
    fused with the line reduction, one read of the logits.

    Args:
        rows: ``[lines * n, C]`` float32/float16/bfloat16 line-major logits, any strides;
            computed in float32. (Shapes are checked by the loss record first.)
        targets: ``[lines * n]`` int32/int64 class indices in ``[0, C)``, on the logits' device.
        lines, n: points and samples per point.

    Returns:
        ``LossReduction``: float32 ``sample_loss`` (nats), float64 ``line_sum`` (float32 partial
        sums over at most one row block, combined in float64), int64 ``correct``.

    Raises:
        ValueError: logits this backend does not take (see ``TRITON_REQUIREMENT``), targets on
            another device or out of range.
    """
    _checked(rows, targets)
    from losslines.kernels.triton_cross_entropy import cross_entropy_triton
    return cross_entropy_triton(rows, targets, lines=lines, n=n)


def mse_reduction(rows: Tensor, targets: Tensor, *, lines: int, n: int) -> LossReduction:
    """The ``mse`` loss's Triton kernel: ``kernels.reference.mse_reference`` fused with the line
    reduction (float targets ``[lines * n, C]`` of any strides, or int32/int64 class indices
    ``[lines * n]`` against one-hot vectors); otherwise as :func:`cross_entropy_reduction`."""
    _checked(rows, targets)
    from losslines.kernels.triton_mse import mse_triton
    return mse_triton(rows, targets, lines=lines, n=n)


def token_cross_entropy_reduction(rows: Tensor, targets: Tensor, *, lines: int, n: int) -> LossReduction:
    """The ``token_cross_entropy`` loss's Triton kernel: ``kernels.reference.
    token_cross_entropy_reference`` fused with the token and line reductions, one read of the
    logits of the counted tokens (``triton_token_cross_entropy``).

    Args:
        rows: ``[lines * n, T, V]`` float32/float16/bfloat16 line-major logits, any strides.
        targets: ``[lines * n, T]`` int32/int64 token ids in ``[0, V)`` or -100 (not counted).
        lines, n: points and samples per point.

    Raises:
        ValueError: logits this backend does not take, targets on another device or out of range.
    """
    from losslines.kernels.reference import IGNORE_INDEX

    _checked(rows, targets, ignore=IGNORE_INDEX)
    from losslines.kernels.triton_token_cross_entropy import token_cross_entropy_triton
    return token_cross_entropy_triton(rows, targets, lines=lines, n=n)

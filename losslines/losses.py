"""The loss registry: one record per loss, consulted by training, measurement and every kernel.

A :class:`Loss` says everything losslines needs to know about one per-sample loss:

* ``prepare_targets`` — the target check (a clear ``ValueError`` for targets the loss cannot
  take) and their canonical form on the model's device; whether accuracy is defined for them;
* ``as_rows`` / ``check`` — how a chunk of model outputs ``[R, ...]`` becomes the rows the
  reductions take, and the shape check of rows against targets that every backend relies on;
* ``reference`` — the plain-PyTorch per-sample loss (and per-row correctness): the oracle every
  fused kernel is tested against, and the function forward-mode slopes differentiate;
* ``training_loss`` — the mean loss the training step differentiates (what a ``torch.nn``
  user writes, e.g. ``F.cross_entropy``);
* ``kernels`` — optional fused implementations per backend (``{"triton": fn}``).

:func:`reduce_loss` is the dispatch: ``backend="torch"`` runs the reference; a named backend
runs that loss's kernel for it and refuses a loss it has no kernel for; ``"auto"`` takes the first
backend of ``losslines.kernels.AUTO_ORDER`` that is automatic for the outputs *and* has a kernel
for the loss, else the reference. Adding a loss is one call, ``register_loss(Loss(...))``;
adding a kernel to a registered loss is ``register_kernel(loss, backend, fn)``.

Layout: the outputs of ``lines`` points over the same ``n`` samples are stacked line-major,
``[lines * n, ...]`` (rows ``j*n .. (j+1)*n - 1`` belong to point ``j``). Losses are in nats
(cross-entropy) or squared output units (mse); line sums are accumulated in float64.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from losslines.kernels import AUTO_ORDER, LossReduction, backend_is_automatic, backend_names, resolve_backend
from losslines import batched
from losslines.kernels import reference as ref
from losslines.kernels import triton_backend

__all__ = ["Loss", "LossReduction", "register_loss", "register_kernel", "get_loss", "loss_names",
           "reduce_loss", "select_kernel", "loss_from_callable", "logits_of"]

Reference = Callable[[Tensor, Tensor], "tuple[Tensor, Tensor | None]"]
Kernel = Callable[..., LossReduction]


@dataclass(frozen=True)
class Loss:
    """One per-sample loss.

    Attributes:
        name: registry name (``measure.loss`` in a config).
        doc: one line: the formula and unit.
        prepare_targets: ``(targets [N, ...], float_dtype, device) -> (targets, has_accuracy)``:
            the canonical targets on ``device`` (floating targets in ``float_dtype``), and whether
            accuracy is defined for them. Raises ``ValueError`` naming what it expected.
        as_rows: ``outputs [R, ...] -> rows``: a chunk of model outputs as the rows the
            reductions take. Raises ``ValueError`` for outputs of the wrong shape.
        check: ``(rows, targets) -> None``: ``ValueError`` when rows and targets do not fit
            (shared by every backend, run before any of them).
        reference: ``(rows, targets) -> (sample_loss [R], correct [R] bool or None)``: the
            plain-PyTorch per-sample loss (differentiable, also forward-mode) and per-row
            correctness (None: accuracy undefined for these targets).
        training_loss: ``(outputs [B, ...], targets [B, ...]) -> scalar``: the mean loss of a
            training batch.
        kernels: ``{backend: fn(rows, targets, *, lines, n) -> LossReduction}``, fused kernels.
        counts: ``targets -> [R]`` int64 predictions counted per row, the denominator of the
            accuracy when ``reference`` returns per-row *counts* of correct predictions (tokens of
            a language model); None: ``correct`` is one boolean per row.
        points_at_once: the reference may take the rows of several points stacked (it computes
            each row from that row alone); False: it is called once per point, on that point's
            ``n`` rows (a user's function, which may treat its argument as one batch).
    """

    name: str
    doc: str
    prepare_targets: Callable[[Tensor, torch.dtype, torch.device], "tuple[Tensor, bool]"]
    as_rows: Callable[[Tensor], Tensor]
    check: Callable[[Tensor, Tensor], None]
    reference: Reference
    training_loss: Callable[[Tensor, Tensor], Tensor]
    kernels: Mapping[str, Kernel] = field(default_factory=dict)
    counts: Callable[[Tensor], Tensor] | None = None
    points_at_once: bool = True


_LOSSES: dict[str, Loss] = {}


def register_loss(loss: Loss) -> Loss:
    """Add ``loss`` to the registry (re-registering a name replaces it); returns it."""
    if not isinstance(loss, Loss):
        raise ValueError(f"register_loss takes a Loss record, got {type(loss).__name__}")
    unknown = set(loss.kernels) - set(backend_names())
    if unknown or "torch" in loss.kernels:
        raise ValueError(f"loss {loss.name!r} names kernels for {sorted(unknown | ({'torch'} & set(loss.kernels)))}; "
                         f"kernels are for the registered backends other than 'torch' (the reference): "
                         f"{', '.join(b for b in backend_names() if b not in ('auto', 'torch'))}")
    _LOSSES[loss.name] = loss
    return loss


def register_kernel(loss: str, backend: str, fn: Kernel) -> Loss:
    """Give the registered ``loss`` a fused kernel for ``backend``; returns the updated record."""
    return register_loss(dataclasses.replace(get_loss(loss), kernels={**get_loss(loss).kernels, backend: fn}))


def loss_names() -> tuple[str, ...]:
    """The registered loss names."""
    return tuple(_LOSSES)


def get_loss(name: str | Loss | Callable) -> Loss:
    """The registered :class:`Loss` called ``name``; a ``Loss`` is returned as it is, and a
    callable ``fn(outputs, targets) -> [n]`` per-sample losses becomes one (:func:`loss_from_callable`).

    Raises:
        ValueError: unknown name; the message lists the registered losses.
    """
    if isinstance(name, Loss):
        return name
    if callable(name):
        return loss_from_callable(name)
    entry = _LOSSES.get(name)
    if entry is None:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(_LOSSES)}")
    return entry


def _rows_per_line(rows, lines: int) -> int:
    if not isinstance(lines, int) or isinstance(lines, bool) or lines < 1:
        raise ValueError(f"lines must be an integer >= 1, got {lines!r}")
    total = batched.rows(rows)
    if total % lines:
        raise ValueError(f"outputs have {total} rows, not a multiple of lines={lines}")
    return total // lines


def _per_sample(loss: Loss, rows, targets, n: int):
    """``loss.reference`` on ``n`` rows, its result checked to be one loss per sample."""
    sample_loss, correct = loss.reference(rows, targets)
    if not isinstance(sample_loss, Tensor) or tuple(sample_loss.shape) != (n,):
        got = tuple(sample_loss.shape) if isinstance(sample_loss, Tensor) else type(sample_loss).__name__
        raise ValueError(f"loss {loss.name!r} must return one loss per sample, a tensor of shape [{n}]; got {got}")
    return sample_loss, correct


def _reference_kernel(loss: Loss) -> Kernel:
    """The reference as a kernel: per-sample losses, float64 line sums, correct counts."""

    def run(rows, targets, *, lines: int, n: int) -> LossReduction:
        if loss.points_at_once or lines == 1:
            sample_loss, correct = _per_sample(loss, rows, targets, lines * n)
        else:  # one point at a time: the function sees one batch of n samples, as in training
            parts = [_per_sample(loss, batched.take(rows, slice(j * n, (j + 1) * n)),
                                 batched.take(targets, slice(j * n, (j + 1) * n)), n) for j in range(lines)]
            sample_loss = torch.cat([p[0] for p in parts])
            correct = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        line_sum = sample_loss.detach().to(torch.float64).view(lines, n).sum(dim=1)
        device = sample_loss.device
        counts = torch.zeros(lines, dtype=torch.int64, device=device) if correct is None \
            else correct.view(lines, n).sum(dim=1, dtype=torch.int64)
        counted = None if loss.counts is None or correct is None \
            else loss.counts(targets).view(lines, n).sum(dim=1, dtype=torch.int64)
        return LossReduction(sample_loss=sample_loss, line_sum=line_sum, correct=counts, counted=counted)

    return run


def select_kernel(loss: str | Loss, backend: str, rows: Tensor) -> tuple[str, Kernel]:
    """``(backend name, kernel)`` that :func:`reduce_loss` uses for ``loss`` on these rows.

    Raises:
        ValueError: unknown loss or backend, a named backend unavailable for these rows, or a
            named backend without a kernel for this loss (use ``"auto"`` or ``"torch"``).
    """
    spec = get_loss(loss)
    if backend == "auto":
        for name in AUTO_ORDER:
            if name == "torch":
                return "torch", _reference_kernel(spec)
            if name in spec.kernels and backend_is_automatic(name, rows):
                return name, spec.kernels[name]
        return "torch", _reference_kernel(spec)
    if backend == "torch":
        resolve_backend(backend, rows)
        return "torch", _reference_kernel(spec)
    if backend in backend_names() and backend not in spec.kernels:
        has = ", ".join(spec.kernels) or "none"
        raise ValueError(f"loss backend {backend!r} has no kernel for loss {spec.name!r} (its kernels: {has}); "
                         "use backend='auto' (falls back to the torch reference) or 'torch'")
    resolve_backend(backend, rows)  # unknown or unavailable: ValueError
    return backend, spec.kernels[backend]


def reduce_loss(outputs: Tensor, targets: Tensor, *, loss: str | Loss = "cross_entropy", lines: int = 1,
                backend: str = "auto") -> LossReduction:
    """Per-sample losses, float64 per-point sums and correct counts of line-major outputs.

    Args:
        outputs: ``[lines * n, ...]`` model outputs, line-major (see the module docstring);
            float16/bfloat16 are computed in float32.
        targets: ``[lines * n, ...]`` targets in the loss's canonical form (``prepare_targets``).
        loss: a registered loss name (or a ``Loss``).
        lines: number of points stacked in ``outputs``.
        backend: ``"auto"`` or a registered backend name (``losslines.kernels.backend_names``).

    Returns:
        ``LossReduction``: ``sample_loss [lines * n]``, ``line_sum [lines]`` float64,
        ``correct [lines]`` int64 (zeros where accuracy is undefined).

    Raises:
        ValueError: unknown loss or backend (listing the valid names), a backend that cannot run
            this loss on these outputs, or outputs and targets that do not fit.
    """
    spec = get_loss(loss)
    rows = spec.as_rows(outputs)
    n = _rows_per_line(rows, lines)
    spec.check(rows, targets)
    _, kernel = select_kernel(spec, backend, rows)
    return kernel(rows, targets, lines=lines, n=n)


# -- built-in losses ------------------------------------------------------------------------------

def logits_of(outputs) -> Tensor:
    """The logits tensor of a model's output structure: the tensor itself, a ``"logits"`` entry
    or attribute (HuggingFace model outputs), or the first element of a tuple or list.

    Raises:
        ValueError: none of these.
    """
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, Mapping) and isinstance(outputs.get("logits"), Tensor):
        return outputs["logits"]
    if isinstance(getattr(outputs, "logits", None), Tensor):
        return outputs.logits
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], Tensor):
        return outputs[0]
    raise ValueError(f"cannot find the logits in a model output of type {type(outputs).__name__}: return a "
                     "tensor, a tuple whose first element is the logits, or a dict/object with 'logits'; "
                     "or pass a loss function that takes the whole output")


def _class_indices(targets: Tensor) -> bool:
    return isinstance(targets, Tensor) and targets.dim() == 1 and not targets.is_floating_point() \
        and not targets.is_complex() and targets.dtype != torch.bool


def _ce_targets(targets: Tensor, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, bool]:
    if not _class_indices(targets):
        raise ValueError(f"cross_entropy targets must be 1-D integer class indices, got {_describe(targets)}")
    return targets.to(device=device, dtype=torch.int64), True


def _ce_rows(outputs) -> Tensor:
    logits = logits_of(outputs)
    if logits.dim() != 2:
        raise ValueError(f"cross_entropy needs model outputs [n, C], got per-sample shape {tuple(logits.shape[1:])}")
    return logits


def _ce_check(rows: Tensor, targets: Tensor) -> None:
    if targets.shape != (rows.shape[0],) or targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"cross_entropy targets must be integer class indices of shape [{rows.shape[0]}], "
                         f"got {targets.dtype} {tuple(targets.shape)}")


def _flat(t: Tensor) -> Tensor:
    """``[R, ...]`` as ``[R, prod(...)]`` (``[R]`` as ``[R, 1]``), also for R = 0."""
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))


def _mse_targets(targets: Tensor, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, bool]:
    if _class_indices(targets):
        return targets.to(device=device, dtype=torch.int64), True
    if isinstance(targets, Tensor) and targets.is_floating_point():
        return _flat(targets).to(device=device, dtype=dtype), False
    raise ValueError(f"mse targets must be floats [N] / [N, C] or integer class indices [N], got {_describe(targets)}")


def _mse_rows(outputs) -> Tensor:
    return _flat(logits_of(outputs))


def _mse_check(rows: Tensor, targets: Tensor) -> None:
    regression = targets.shape == rows.shape and targets.is_floating_point()
    classes = targets.shape == (rows.shape[0],) and targets.dtype in (torch.int64, torch.int32)
    if not (regression or classes):
        raise ValueError(f"mse targets must be floats of the outputs' shape {tuple(rows.shape)} or integer class "
                         f"indices of shape [{rows.shape[0]}], got {targets.dtype} {tuple(targets.shape)}")


def _mse_training(outputs, targets: Tensor) -> Tensor:
    outputs = logits_of(outputs)
    if targets.is_floating_point():
        return F.mse_loss(_flat(outputs), _flat(targets))
    # class indices: squared error against one-hot vectors, as the measurement defines it
    return F.mse_loss(outputs, F.one_hot(targets, outputs.shape[-1]).to(outputs.dtype))


def _token_targets(targets: Tensor, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, bool]:
    if not (isinstance(targets, Tensor) and targets.dim() == 2 and not targets.is_floating_point()
            and targets.dtype != torch.bool):
        raise ValueError(f"token_cross_entropy targets must be integer token ids [N, T] (-100: not predicted), "
                         f"got {_describe(targets)}")
    empty = torch.nonzero((targets != ref.IGNORE_INDEX).sum(dim=1) == 0).flatten()
    if empty.numel():
        raise ValueError(f"token_cross_entropy: sample(s) {empty[:5].tolist()} have no target token (every target "
                         f"is {ref.IGNORE_INDEX}); a sample's loss is the mean over its own tokens, so drop them")
    return targets.to(device=device, dtype=torch.int64), True


def _token_rows(outputs) -> Tensor:
    logits = logits_of(outputs)
    if logits.dim() != 3:
        raise ValueError(f"token_cross_entropy needs model outputs [n, T, V], got per-sample shape "
                         f"{tuple(logits.shape[1:])}")
    return logits


def _token_check(rows: Tensor, targets: Tensor) -> None:
    if tuple(targets.shape) != tuple(rows.shape[:2]) or targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"token_cross_entropy targets must be integer token ids of shape {list(rows.shape[:2])}, "
                         f"got {targets.dtype} {tuple(targets.shape)}")


def _token_training(outputs, targets: Tensor) -> Tensor:
    """The mean over samples of each sample's mean token loss: the loss the lines measure."""
    sample_loss, _ = ref.token_cross_entropy_reference(_token_rows(outputs), targets)
    return sample_loss.mean()


def _describe(x) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


register_loss(Loss(
    name="cross_entropy",
    doc="ℓ = −log softmax(z)[y] in nats; integer class targets; accuracy = argmax(z) == y",
    prepare_targets=_ce_targets, as_rows=_ce_rows, check=_ce_check,
    reference=ref.cross_entropy_reference, training_loss=lambda out, y: F.cross_entropy(logits_of(out), y),
    kernels={"triton": triton_backend.cross_entropy_reduction},
))
register_loss(Loss(
    name="mse",
    doc="ℓ = mean_c (z_c − y_c)²; float targets, or class indices against one-hot vectors (then with accuracy)",
    prepare_targets=_mse_targets, as_rows=_mse_rows, check=_mse_check,
    reference=ref.mse_reference, training_loss=_mse_training,
    kernels={"triton": triton_backend.mse_reduction},
))
register_loss(Loss(
    name="token_cross_entropy",
    doc="ℓ = mean over a sample's counted tokens of −log softmax(z_t)[y_t] in nats; outputs [n, T, V], "
        "token ids [n, T], -100 not counted; accuracy = correct tokens / counted tokens",
    prepare_targets=_token_targets, as_rows=_token_rows, check=_token_check,
    reference=ref.token_cross_entropy_reference, training_loss=_token_training,
    kernels={"triton": triton_backend.token_cross_entropy_reduction},
    counts=lambda targets: (targets != ref.IGNORE_INDEX).sum(dim=1),
))


# -- a user's own function ------------------------------------------------------------------------

def loss_from_callable(fn: Callable, name: str | None = None) -> Loss:
    """A :class:`Loss` from ``fn(outputs, targets) -> [n]`` per-sample losses.

    ``outputs`` is whatever the model returns (a tensor, tuple, dict or output object) for one
    point's ``n`` samples, ``targets`` the matching rows of the targets (any batched structure).
    ``fn`` is called once per point, so it may treat its arguments as one batch; it must be
    differentiable (the slope at 0 is its forward-mode derivative). The training loss is the mean
    of ``fn`` over the batch; accuracy is undefined (NaN).

    Raises:
        ValueError: ``fn`` is not callable.
    """
    if not callable(fn):
        raise ValueError(f"a loss must be a registered name, a Loss or a callable, got {type(fn).__name__}")
    label = name or getattr(fn, "__name__", None) or type(fn).__name__
    return Loss(
        name=label if label != "<lambda>" else "callable",
        doc=f"user function {label}(outputs, targets) -> per-sample losses",
        prepare_targets=lambda targets, dtype, device: (batched.to_device(targets, device, dtype), False),
        as_rows=lambda outputs: outputs, check=lambda rows, targets: None,
        reference=lambda rows, targets: (fn(rows, targets), None),
        training_loss=lambda outputs, targets: fn(outputs, targets).mean(),
        points_at_once=False,
    )

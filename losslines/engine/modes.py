"""Measurement modes: BatchNorm and dropout as explicit settings (docs/design.md, "The measurement").

* ``bn="running"``: every normalisation layer in eval mode — it normalises with its running
  statistics, so samples are independent and can be chunked freely.
* ``bn="batch"``: normalisation layers in train mode — statistics of each fixed group of
  ``bn_group`` consecutive samples (the paper's semantics: the statistics of every 128-sample
  batch). The running buffers are never written: the evaluator hands the forward *copies* of
  all buffers (``LinePoints``), so the copies absorb the train-mode running-average update.
* ``dropout="off"``: every other module runs in eval mode, so dropout is the identity and the
  measured function is deterministic. ``dropout="error"``: a dropout module with ``p > 0`` is an
  error (for runs that must not contain dropout at all). ``dropout="fixed"``: dropout modules run
  in train mode, and every forward of a line starts from the line's seed (``engine.rng.seeded``),
  so each line is the training-mode function of *one* dropout mask — the same at every point of
  the line, another on the next line.

All module ``training`` flags are restored afterwards (``engine.rng.preserved_rng`` restores the
global generators, so measuring consumes no randomness of the training run either).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

BN_MODES = ("running", "batch")
DROPOUT_MODES = ("off", "error", "fixed")


def check_bn(bn: str) -> str:
    """Return ``bn`` if valid, else raise ValueError listing the valid modes."""
    if bn not in BN_MODES:
        raise ValueError(f"unknown bn mode {bn!r}; valid modes: {', '.join(BN_MODES)}")
    return bn


def check_dropout(dropout: str) -> str:
    """Return ``dropout`` if valid, else raise ValueError listing the valid modes."""
    if dropout not in DROPOUT_MODES:
        raise ValueError(f"unknown dropout mode {dropout!r}; valid modes: {', '.join(DROPOUT_MODES)}")
    return dropout


def norm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Normalisation layers whose result depends on the train/eval mode (BatchNorm, InstanceNorm)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _NormBase)]


def active_dropout(model: nn.Module) -> list[str]:
    """Names of the dropout modules with ``p > 0``: training with them differentiates another
    function than the (dropout-free) measurement, so the plain-SGD slope check cannot apply."""
    return [name for name, m in model.named_modules() if isinstance(m, _DropoutNd) and m.p > 0]


def validate_model(model: nn.Module, bn: str, dropout: str) -> None:
    """Loud checks that the model can be measured with these settings.

    Raises:
        ValueError: unknown mode names; ``bn="running"`` with a norm layer that keeps no running
            statistics (it would silently use chunk statistics); ``dropout="error"`` with an
            active dropout module.
    """
    check_bn(bn)
    check_dropout(dropout)
    if bn == "running":
        stateless = [name for name, m in norm_layers(model) if not m.track_running_stats]
        if stateless:
            raise ValueError(
                f"bn='running' but layer(s) {stateless[:3]} keep no running statistics "
                "(track_running_stats=False); measure with bn='batch' and a bn_group"
            )
    if dropout == "error":
        active = active_dropout(model)
        if active:
            raise ValueError(
                f"active dropout in the measured model ({active[:3]}, dropout='error'); "
                "pass dropout='off' to measure with dropout as the identity"
            )


@contextmanager
def measurement_modes(model: nn.Module, bn: str, dropout: str = "off") -> Iterator[None]:
    """Put ``model`` in the measurement's modes for the block; restore every ``training`` flag."""
    check_bn(bn)
    check_dropout(dropout)
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        if bn == "batch":
            for _, m in norm_layers(model):
                m.train()
        if dropout == "fixed":
            for m in model.modules():
                if isinstance(m, _DropoutNd):
                    m.train()
        yield
    finally:
        for m, flag in flags:
            m.training = flag

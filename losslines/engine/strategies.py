"""Evaluation strategies: how the model outputs of a chunk of points are computed (DESIGN §2).

A strategy implements one method, ``outputs(line, positions, x) -> [k, n, ...]``: the model
outputs at ``k`` positions for one chunk of inputs. Chunking over data and points, the loss
reduction, float64 accumulation, slopes and safeguards are inherited from ``LineEvaluator``.

* ``"loop"``: one ``functional_call`` forward per point (fastest on CPU).
* ``"vmap"``, ``"auto"``: reserved names, implemented by a later issue (``torch.func.vmap`` over
  the points; ``auto`` times both on the first line and keeps the faster).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from losslines.engine.line import LinePoints


class Strategy(ABC):
    """Computes model outputs at several points of a line for one chunk of inputs."""

    name: ClassVar[str]

    @abstractmethod
    def outputs(self, line: LinePoints, positions: np.ndarray, x: Tensor) -> Tensor:
        """Model outputs at each position.

        Args:
            line: the bound line ``θ_t + s·û`` (modes and grad mode are set by the caller).
            positions: ``[k]`` float64 distances along û.
            x: ``[n, ...]`` inputs of one data chunk (one BatchNorm group in ``bn="batch"``).

        Returns:
            ``[k, n, ...]`` outputs, point-major.
        """


class LoopStrategy(Strategy):
    """One functional forward per point, points one after another."""

    name = "loop"

    def outputs(self, line: LinePoints, positions: np.ndarray, x: Tensor) -> Tensor:
        return torch.stack([line.forward(float(s), x) for s in positions])


STRATEGIES: dict[str, type[Strategy] | None] = {"loop": LoopStrategy, "vmap": None, "auto": None}


def make_strategy(name: str) -> Strategy:
    """Instantiate the strategy registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid names).
        NotImplementedError: a reserved name whose implementation does not exist yet.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
    cls = STRATEGIES[name]
    if cls is None:
        available = [n for n, c in STRATEGIES.items() if c is not None]
        raise NotImplementedError(f"strategy {name!r} is not available yet; use {' or '.join(map(repr, available))}")
    return cls()

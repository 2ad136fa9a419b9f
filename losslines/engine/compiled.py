"""Compiled point evaluation: ``torch.compile`` of a fixed-shape block of points (docs/design.md, "The measurement").

``CompiledPoints`` holds one ``torch.compile``'d function, ``block_outputs``, that evaluates the
model at a block of ``b`` points for one chunk of inputs. Inside it, each point's parameters are
built from the pristine θ_t and u exactly as ``LinePoints.point`` builds them,
``fl(c·u + θ_t)`` in float64 with ``c = s/‖u‖``, rounded once to the parameter's dtype (the
compiler may fuse ``c·u + θ_t`` into one fused multiply-add: the float64 value then differs in its
last bit, which rounding to float32 almost never shows). Everything the function reads — θ_t, u,
the buffers, the positions and the inputs — is an argument, so one compiled graph serves every
line of a run: shapes are fixed (``dynamic=False``); a block is always ``b`` points (the caller
pads); the one graph more that a run may need is a last, smaller group of rows (``bn="batch"``
with N not a multiple of ``bn_group``) or another split's chunk size.

* No side effects: with train-mode layers (``bn="batch"``) every point normalises with fresh
  copies of the buffers made *inside* the graph, so the running-statistics update writes graph
  temporaries that are discarded (nothing of the line's or the model's is written).
* Every ``CompiledPoints`` compiles its own copy of the function's code, so its graphs and
  torch's recompilation limit are its own, not shared with other instances in the process.
* Hitting the recompilation limit is an error, never a silent fall-back to eager execution.
* On CUDA the mode is ``"reduce-overhead"`` (CUDA graphs): outputs are cloned before the next
  replay overwrites them.

Accounting: ``graphs`` counts the graphs this instance compiled (dynamo's ``unique_graphs``
counter across each call) and ``compile_seconds`` sums the wall time of the calls that compiled
one (compilation plus that call's execution).
"""

from __future__ import annotations

import time
import types
from typing import Mapping

import torch
from torch import Tensor, nn

from losslines import batched

COMPILE_SETTING = "measure.strategy='compiled'"


def block_outputs(model: nn.Module, theta: Mapping[str, Tensor], u: Mapping[str, Tensor],
                  frozen: Mapping[str, Tensor], buffers: Mapping[str, Tensor], c: Tensor, x,
                  fresh_buffers: bool):
    """Model outputs at ``b`` points of a line (the function that is compiled).

    Args:
        model: the model (its modes set by the caller; parameters and buffers are not read).
        theta: ``{name: tensor}`` θ_t of the trainable parameters (the model's dtype).
        u: ``{name: tensor}`` the direction, any scale, same shapes and dtypes as ``theta``.
        frozen: ``{name: tensor}`` parameters that do not move.
        buffers: ``{name: tensor}`` buffers at θ_t (never written).
        c: ``[b]`` float64, ``s_j/‖u‖`` for distance ``s_j`` along û.
        x: ``[n, ...]`` inputs of one chunk (tensor or tuple/dict of tensors).
        fresh_buffers: copy the buffers for every point (train-mode layers write them).

    Returns:
        ``[b, n, ...]`` outputs, point-major.
    """
    outs = []
    for j in range(c.shape[0]):
        params = {}
        for name, t in theta.items():
            if t.dtype == torch.float64:
                params[name] = t + c[j] * u[name]
            else:
                params[name] = (c[j] * u[name].to(torch.float64) + t.to(torch.float64)).to(t.dtype)
        params.update(frozen)
        bufs = {name: b.clone() for name, b in buffers.items()} if fresh_buffers else dict(buffers)
        outs.append(batched.call(model, x, (params, bufs)))
    return batched.stack(outs)


class CompiledPoints:
    """One compiled ``block_outputs`` and its accounting (see the module docstring).

    Args:
        device: where the model runs (CUDA: ``mode="reduce-overhead"``; else the default mode).
        block: points per compiled call ``b``.

    Attributes:
        graphs: graphs compiled by this instance so far.
        compile_seconds: wall seconds of the calls that compiled a graph.
    """

    def __init__(self, device: torch.device, block: int):
        if block < 1:
            raise ValueError(f"a compiled block needs at least one point, got {block}")
        self.device, self.block = torch.device(device), int(block)
        self.mode = "reduce-overhead" if self.device.type == "cuda" else "default"
        self.graphs, self.compile_seconds = 0, 0.0
        own = types.FunctionType(block_outputs.__code__.replace(), block_outputs.__globals__, "block_outputs")
        try:
            self._fn = torch.compile(own, mode=self.mode, dynamic=False, fullgraph=True)
        except Exception as err:  # noqa: BLE001  (torch.compile unavailable: said in one line)
            raise RuntimeError(f"{COMPILE_SETTING}: torch.compile is not available here ({err}); "
                               "use measure.strategy='loop'") from err

    def __call__(self, line, c: Tensor, x):
        """``[b, n, ...]`` outputs of ``line`` (a ``LinePoints``) at ``c`` (``[b]`` float64, s/‖u‖)."""
        from torch._dynamo import config as dynamo_config
        from torch._dynamo.utils import counters

        if c.shape != (self.block,):
            raise ValueError(f"a compiled block takes exactly {self.block} points, got {tuple(c.shape)}")
        fresh = any(m.training for m in line.model.modules())
        before = counters["stats"]["unique_graphs"]
        t0 = time.perf_counter()
        try:
            with dynamo_config.patch(fail_on_recompile_limit_hit=True):
                if self.mode == "reduce-overhead":
                    torch.compiler.cudagraph_mark_step_begin()
                out = self._fn(line.model, line.theta, line.u, line.frozen, line.buffers, c, x, fresh)
        except Exception as err:  # noqa: BLE001  (a compiler failure: no silent eager fall-back)
            if isinstance(err, torch.cuda.OutOfMemoryError):
                raise
            raise RuntimeError(f"{COMPILE_SETTING} could not compile or run this model "
                               f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
                               "use measure.strategy='loop'") from err
        if self.mode == "reduce-overhead":  # the next replay reuses the graph's output memory
            out = batched.map_tensors(lambda t: t.clone(), out)
        new = counters["stats"]["unique_graphs"] - before
        if new > 0:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.graphs += new
            self.compile_seconds += time.perf_counter() - t0
        return out

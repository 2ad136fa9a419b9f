"""Memory layouts for the Triton kernel tests.

The Triton test modules set ``TRITON_INTERPRET=1`` themselves, at their top, on machines without
CUDA (Triton fixes interpreted vs compiled when it is first imported; see
``losslines.kernels.triton_backend``). With CUDA they run the same oracle tests on the GPU, with
the compiled kernels.
"""

from __future__ import annotations

import pytest
import torch

LAYOUTS = ("contiguous", "transposed", "strided")


@pytest.fixture(scope="session", name="relayout")
def relayout_fixture():
    """``relayout(tensor, layout)`` (below), as a fixture so test modules need no import path."""
    return relayout


def relayout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``t`` (1-D or 2-D, on its device) in another memory layout.

    ``"contiguous"``: row-major; ``"transposed"``: a ``.t()`` view of a column-major copy (2-D;
    1-D tensors become a strided column of a 2-D buffer; 3-D tensors get the last dimension
    outermost in memory); ``"strided"``: every second row and third column of a larger buffer
    (non-unit strides in both dimensions; 3-D: every second row and third entry of the last
    dimension).
    """
    if layout == "contiguous":
        return t.contiguous()
    if t.dim() == 3:
        if layout == "transposed":
            return t.permute(2, 0, 1).contiguous().permute(1, 2, 0)
        if layout == "strided":
            buf = torch.full((2 * t.shape[0], t.shape[1], 3 * t.shape[2]), 1e3, dtype=t.dtype, device=t.device)
            view = buf[::2, :, ::3]
            view.copy_(t)
            return view
    if t.dim() == 1:
        step = 2 if layout == "transposed" else 3
        buf = torch.full((t.shape[0], step), -7, dtype=t.dtype, device=t.device)
        buf[:, 0] = t
        return buf[:, 0]
    if layout == "transposed":
        return t.t().contiguous().t()
    if layout == "strided":
        buf = torch.full((2 * t.shape[0], 3 * t.shape[1]), 1e3, dtype=t.dtype, device=t.device)
        view = buf[::2, ::3]
        view.copy_(t)
        return view
    raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")


@pytest.fixture(scope="session")
def assert_same_layouts():
    """Compare kernel results computed from two memory layouts of the same values: bitwise in
    the interpreter (numpy does the same operations for any strides), within float32 reduction
    order on a GPU (the compiler may pick another register layout, hence another summation tree)."""

    def check(actual: torch.Tensor, expected: torch.Tensor) -> None:
        if actual.device.type == "cpu":
            assert torch.equal(actual, expected)
        else:
            torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)

    return check

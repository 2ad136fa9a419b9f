"""Model-size scaling: a line of a >= 100M-parameter transformer needs about one extra parameter
set (the point the forward runs at) plus bounded float64 temporaries — no float64 model copies —
and reduced-precision models are measured exactly at s = 0 and rounded once from float64 elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from losslines.engine.line import LinePoints
from losslines.models import build_model

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_100m_parameter_transformer_line_needs_about_one_extra_parameter_set():
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "line_memory.py"), "--model", "transformer"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["parameters"] >= 100_000_000 and result["finite"]
    # the point's parameters (1x), float64 chunks (32 MiB each) and activations; before the
    # per-tensor points a line held float64 copies of θ_t and û besides (measured: 8.4x)
    assert result["extra_bytes"] <= 1.4 * result["parameter_bytes"], result


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_points_are_exact_at_zero_and_rounded_once(dtype):
    torch.manual_seed(0)
    model = build_model("byte_lm", num_classes=11, input_shape=(6,), width=0.125, depth=1, heads=2).to(dtype)
    g = torch.Generator().manual_seed(1)
    direction = {n: torch.randn(p.shape, generator=g).to(dtype) for n, p in model.named_parameters()}
    line = LinePoints(model, direction)
    for name, p in model.named_parameters():
        assert torch.equal(line.point(name, 0.0), p.detach())  # θ(0) = θ_t bit for bit
        s = 0.37
        exact = p.detach().double() + s * line.scale * direction[name].double()
        got = line.point(name, s)
        assert got.dtype == dtype
        # rounded once: the float64 point (θ_t + (s/‖u‖)·u) cast to the model's dtype, nothing else
        assert torch.equal(got, exact.to(dtype)), name


def test_huge_tensors_are_built_in_chunks_with_the_same_values(monkeypatch):
    from losslines.engine import directions

    torch.manual_seed(0)
    model = torch.nn.Linear(64, 48)
    direction = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    whole = LinePoints(model, direction)
    expected = {n: whole.point(n, 0.21) for n in whole.names}
    monkeypatch.setattr(directions, "FLOAT64_CHUNK", 100)  # 64-element rows: one row per chunk
    chunked = LinePoints(model, direction)
    assert chunked.scale == pytest.approx(whole.scale, rel=1e-15)
    for n in whole.names:
        np.testing.assert_array_equal(chunked.point(n, 0.21).numpy(), expected[n].numpy())

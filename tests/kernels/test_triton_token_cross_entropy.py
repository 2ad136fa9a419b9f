"""The fused Triton token cross-entropy against a hand-written mean over counted tokens.

Runs in Triton's interpreter on CPU (``TRITON_INTERPRET=1`` set below before Triton is first
imported) and compiled on a GPU. Vocabularies from 2 to GPT-2's 50,257, ignored targets (-100),
tile overrides that make small shapes cross token-block and vocabulary-tile boundaries.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is first imported (by the kernel modules)
pytest.importorskip("triton")

import torch.nn.functional as F  # noqa: E402

from losslines.losses import get_loss, reduce_loss  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else []


def by_hand(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Each sample's mean of F.cross_entropy over its own tokens whose target is not -100."""
    out = []
    for z, y in zip(logits.float(), ids):
        keep = y != -100
        out.append(F.cross_entropy(z[keep], y[keep], reduction="mean"))
    return torch.stack(out)


def tokens(rows, positions, vocab, seed, ignore=0.3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, positions, vocab, generator=g) * 5
    ids = torch.randint(0, vocab, (rows, positions), generator=g)
    ids[torch.rand(rows, positions, generator=g) < ignore] = -100
    ids[:, 0] = torch.randint(0, vocab, (rows,), generator=g)
    return logits.to(DEVICE), ids.to(DEVICE)


@pytest.mark.parametrize("lines, n, positions, vocab, blocks", [
    (1, 2, 5, 2, {}),
    (2, 3, 7, 3, {"block_tokens": 2}),
    (3, 2, 16, 100, {"block_tokens": 4, "block_vocab": 16}),
    (1, 4, 9, 1000, {}),
    (2, 1, 33, 257, {"block_tokens": 8}),
    (1, 1, 3, 50257, {}),
])
def test_matches_the_mean_over_counted_tokens_by_hand(lines, n, positions, vocab, blocks):
    logits, ids = tokens(lines * n, positions, vocab, seed=vocab + positions)
    if blocks:
        from losslines.kernels.triton_token_cross_entropy import token_cross_entropy_triton
        red = token_cross_entropy_triton(logits, ids, lines=lines, n=n, **blocks)
    else:
        red = reduce_loss(logits, ids, loss="token_cross_entropy", lines=lines, backend="triton")
    expected = by_hand(logits, ids)
    torch.testing.assert_close(red.sample_loss, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(red.line_sum, expected.double().view(lines, n).sum(1), rtol=1e-5, atol=1e-5)
    keep = ids != -100
    hits = (logits.argmax(-1) == ids) & keep
    assert red.correct.tolist() == hits.view(lines, n, -1).sum((1, 2)).tolist()
    assert red.counted.tolist() == keep.view(lines, n, -1).sum((1, 2)).tolist()


def test_ignored_positions_may_hold_any_logits():
    logits, ids = tokens(2, 6, 11, seed=1, ignore=0.5)
    poisoned = logits.clone()
    poisoned[ids == -100] = float("nan")  # never read
    a = reduce_loss(logits, ids, loss="token_cross_entropy", backend="triton")
    b = reduce_loss(poisoned, ids, loss="token_cross_entropy", backend="triton")
    assert torch.equal(a.sample_loss, b.sample_loss) and torch.isfinite(b.sample_loss).all()


def test_a_sample_without_counted_tokens_is_nan_in_the_kernel_and_refused_by_the_loss():
    from losslines.kernels.triton_token_cross_entropy import token_cross_entropy_triton

    logits, ids = tokens(2, 4, 5, seed=2)
    ids[1] = -100
    red = token_cross_entropy_triton(logits, ids, lines=1, n=2)
    assert math.isfinite(red.sample_loss[0].item()) and math.isnan(red.sample_loss[1].item())
    assert red.counted.item() == int((ids[0] != -100).sum())
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] have no target token"):
        get_loss("token_cross_entropy").prepare_targets(ids.cpu(), torch.float32, torch.device("cpu"))


def test_token_logits_of_the_same_values_in_any_layout_agree(relayout, assert_same_layouts):
    logits, ids = tokens(3, 5, 40, seed=3)
    base = reduce_loss(logits, ids, loss="token_cross_entropy", lines=3, backend="triton")
    for layout in ("transposed", "strided"):
        red = reduce_loss(relayout(logits, layout), relayout(ids, layout), loss="token_cross_entropy", lines=3,
                          backend="triton")
        assert_same_layouts(red.sample_loss, base.sample_loss)
        assert torch.equal(red.correct, base.correct)

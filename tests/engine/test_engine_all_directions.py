"""The all-directions mode (paper Fig. 8): M mini-batch directions from one θ_t, training untouched."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from losslines.engine.all_directions import batch_gradient, draw_direction_batches
from losslines.runner.driver import run
from losslines.store import open_store

DIRECTIONS = ["measure.directions_at=[2, 7]", "measure.n_directions=3"]


def test_batch_gradient_equals_autograd_on_a_copy_and_leaves_the_model_alone(tiny):
    model = tiny.make_cnn(seed=5)
    x, y = tiny.make_data(16, seed=6)
    reference = copy.deepcopy(model).train()
    F.cross_entropy(reference(x), y).backward()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    model.eval()
    grads = batch_gradient(model, x, y, params={n: p for n, p in model.named_parameters()},
                           buffers=dict(model.named_buffers()), train_mode=True)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-6, atol=1e-7)
    assert not model.training and all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.get_rng_state(), rng)


def test_draw_direction_batches_is_seeded_and_without_repeats():
    a, b = draw_direction_batches(50, 8, 3, seed=1), draw_direction_batches(50, 8, 3, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(u.unique().numel() == 8 for u in a)
    assert not torch.equal(a[0], a[1])


def test_run_with_all_directions_leaves_training_bit_identical(tmp_path, tiny_config):
    plain = tiny_config(tmp_path, "train.momentum=0.0", name="plain")
    run(plain, progress=False)
    cfg = tiny_config(tmp_path, "train.momentum=0.0", *DIRECTIONS, name="dirs")
    run(cfg, progress=False)
    a, b = open_store(plain.store_path), open_store(cfg.store_path)
    for name in a.names:
        np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)
    d = b.directions
    assert d is not None and d.committed_lines == 2
    np.testing.assert_array_equal(d["step"][...], [2, 7])
    k = b.position.size
    assert d["loss_train"].shape == (2, 3, k) and d["sample_loss_batch"].shape == (2, 3, k, 16)
    # Every direction is a plain-SGD direction of its own batch: slope of that batch = -||g||.
    np.testing.assert_allclose(d["slope0_batch"][...], -d["direction_norm"][...], rtol=1e-4)
    # Different batches, different directions, one θ_t: the losses at s = 0 agree across directions.
    zero = int(np.flatnonzero(b.position == 0)[0])
    l0 = d["loss_train"][:, :, zero]
    np.testing.assert_allclose(l0, l0[:, :1].repeat(3, axis=1), rtol=1e-6)
    assert np.ptp(d["direction_norm"][...], axis=1).min() > 0
    ids = d["batch_ids"][...]
    assert ids.shape == (2, 3, 16) and (ids >= 0).all()


def test_resume_with_all_directions_gives_the_same_groups(tmp_path, tiny_config):
    whole = tiny_config(tmp_path, *DIRECTIONS, name="whole")
    run(whole, progress=False)
    cfg = tiny_config(tmp_path, *DIRECTIONS, name="sliced")
    run(cfg, progress=False, stop_at_step=5)
    assert open_store(cfg.store_path).directions.committed_lines == 1
    run(cfg, resume=True, progress=False)
    a, b = open_store(whole.store_path).directions, open_store(cfg.store_path).directions
    assert b.committed_lines == 2
    for name in a.names:
        np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)


def test_analysis_reports_the_directions_of_a_run(tmp_path, tiny_config):
    from losslines.analysis import analyze_store

    cfg = tiny_config(tmp_path, *DIRECTIONS, name="dirs")
    run(cfg, progress=False)
    report = analyze_store(cfg.store_path, tmp_path / "report", figures=True)
    assert not any("directions" in s for s in report.summary["skipped"])
    assert report.result.directions is not None
    assert any("direction" in str(f) for f in report.figures.values()) or any(
        "direction" in str(k) for k in report.figures)


def test_all_directions_for_a_language_model(tmp_path, tiny_config):
    """The Fig. 8 mode on a causal LM: token data, token cross-entropy, M directions per position."""
    cfg = tiny_config(tmp_path, "data.name=synthetic_tokens", "data.n_val=8", "data.options={vocab=13, seq_len=6}",
                      "model.name=byte_lm", "model.width=0.125", "model.options={depth=1, heads=2}",
                      "measure.loss=token_cross_entropy", "measure.bn=running", "train.momentum=0.0",
                      "measure.half_width=0.2", *DIRECTIONS, name="lm")
    run(cfg, progress=False)
    store = open_store(cfg.store_path)
    d = store.directions
    assert store.status == "complete" and d is not None and d.committed_lines == 2
    k = store.position.size
    assert d["loss_train"].shape == (2, 3, k) and np.isfinite(d["loss_train"][...]).all()
    # plain SGD on each direction's own batch: the batch slope is minus that batch's gradient norm
    np.testing.assert_allclose(d["slope0_batch"][...], -d["direction_norm"][...], rtol=1e-4)
    acc = d["acc_train"][...]
    assert ((acc >= 0) & (acc <= 1)).all()  # token accuracy

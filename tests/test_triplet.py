"""Triplet loss: known values, mining choices, gradients, and the P x K sampler."""

import numpy as np
import pytest
import torch

from training.triplet import PKSampler, triplet_loss


def unit(*rows):
    x = torch.tensor(rows, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True)


def test_zero_when_every_negative_is_beyond_the_margin():
    emb = unit([1, 0], [1, 0.01], [-1, 0], [-1, 0.01])
    loss, active = triplet_loss(emb, torch.tensor([0, 0, 1, 1]), margin=0.2)
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and active == 0.0


def test_known_value_and_mining():
    # anchor a=(1,0), positive at 60 degrees (d = 2 - 2cos60 = 1), negatives at 90 (d = 2) and 45 (d = 0.586).
    emb = unit([1, 0], [np.cos(np.pi / 3), np.sin(np.pi / 3)], [0, 1], [np.cos(np.pi / 4), -np.sin(np.pi / 4)])
    labels = torch.tensor([0, 0, 1, 2])
    # hard: the 45-degree negative for both pairs.
    #   pair (a, p): 1 - 0.586 + 0.2 = 0.614;  pair (p, a): p's closest negative is (0,1) at 30 deg, d = 0.268
    #   -> 1 - 0.268 + 0.2 = 0.932
    hard, _ = triplet_loss(emb, labels, margin=0.2, mining="hard")
    assert hard.item() == pytest.approx((0.6142 + 0.9321) / 2, abs=1e-3)
    # semi-hard: (a, p) -> the 90-degree negative (d = 2 > 1): 1 - 2 + 0.2 < 0 -> 0;
    #   (p, a): negatives at d = 0.268 and d(p, 45deg) = 2 - 2cos(105deg) = 2.518 -> 2.518: hinge 0.
    semi, active = triplet_loss(emb, labels, margin=0.2, mining="semihard")
    assert semi.item() == pytest.approx(0.0, abs=1e-6) and active == 0.0
    # A wider margin makes the semi-hard negatives count: (a,p): 1 - 2 + 1.5 = 0.5; (p,a): 1 - 2.518 + 1.5 < 0.
    semi, active = triplet_loss(emb, labels, margin=1.5, mining="semihard")
    assert semi.item() == pytest.approx(0.25, abs=1e-3) and active == 0.5


def test_gradients_are_finite_and_pull_positives_together():
    torch.manual_seed(0)
    emb = torch.randn(16, 8, requires_grad=True)
    labels = torch.arange(4).repeat_interleave(4)
    loss, _ = triplet_loss(emb, labels, margin=0.5)
    loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    with torch.no_grad():
        moved = emb - 0.5 * emb.grad
    assert triplet_loss(moved, labels, margin=0.5)[0] < loss


def test_batch_without_positives_is_an_error():
    with pytest.raises(ValueError, match="two images of one identity"):
        triplet_loss(torch.randn(4, 8), torch.arange(4))


def test_pk_sampler_draws_p_identities_with_k_images():
    labels = np.repeat(np.arange(10), [1, 2, 3, 5, 8, 8, 8, 8, 8, 8])
    sampler = PKSampler(labels, p=4, k=3, seed=0)
    for _ in range(20):
        batch = sampler.next()
        assert len(batch) == 12
        ids, counts = np.unique(labels[batch], return_counts=True)
        assert len(ids) == 4 and (counts == 3).all() and 0 not in ids

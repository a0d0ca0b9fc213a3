"""Triplet loss with online mining (FaceNet), and the P x K batch sampler it needs.

Unlike the margin heads there are no class centres: the loss only compares embeddings within a
batch, so each batch holds P identities with K images each and every (anchor, positive) pair in it
is used, with a negative mined per pair:

- ``semihard``: the closest negative that is still farther than the positive (inside the margin);
  when an anchor has none, its hardest negative. FaceNet found pure hardest-negative mining
  collapses early training; semi-hard is its remedy.
- ``hard``: the closest negative (batch-hard).

Distances are squared Euclidean between unit vectors (= 2 - 2 cos), margin in the same units.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, mining: str = "semihard"
) -> tuple[torch.Tensor, float]:
    """Mean hinge ``max(0, d(a,p) - d(a,n) + margin)`` over every valid (anchor, positive) pair.

    Returns:
        (loss, fraction of triplets with a positive loss -- how many still teach something).
    """
    if mining not in ("semihard", "hard"):
        raise ValueError(f"mining={mining!r}; use 'semihard' or 'hard'")
    x = F.normalize(embeddings, dim=1)
    dist = (2.0 - 2.0 * x @ x.T).clamp_min(0.0)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    anchor, positive = torch.nonzero(same & ~eye, as_tuple=True)
    if len(anchor) == 0:
        raise ValueError("the batch has no two images of one identity; sample P identities x K >= 2 images")
    d_ap = dist[anchor, positive]
    d_an = dist[anchor]  # (pairs, batch): candidate negatives of each pair's anchor
    negative = ~same[anchor]
    big = torch.finfo(dist.dtype).max
    hardest = torch.where(negative, d_an, big).min(1).values
    if mining == "hard":
        d_neg = hardest
    else:
        # Semi-hard: negatives farther than the positive, closest first; none -> hardest.
        semi = negative & (d_an > d_ap[:, None].detach())
        closest_semi = torch.where(semi, d_an, big).min(1).values
        d_neg = torch.where(semi.any(1), closest_semi, hardest)
    losses = F.relu(d_ap - d_neg + margin)
    return losses.mean(), float((losses > 0).float().mean())


class PKSampler:
    """Endless, seeded batches of ``p`` identities x ``k`` images (identities with >= 2 images only;
    an identity with fewer than ``k`` images is sampled with replacement)."""

    def __init__(self, labels: np.ndarray, p: int, k: int, seed: int) -> None:
        self.by_identity = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        self.by_identity = [idx for idx in self.by_identity if len(idx) >= 2]
        if len(self.by_identity) < p:
            raise ValueError(f"only {len(self.by_identity)} identities have 2+ images; lower p={p}")
        self.p, self.k = p, k
        self.rng = np.random.default_rng(seed)

    def next(self) -> np.ndarray:
        people = self.rng.choice(len(self.by_identity), self.p, replace=False)
        return np.concatenate(
            [self.rng.choice(self.by_identity[i], self.k, replace=len(self.by_identity[i]) < self.k) for i in people]
        )

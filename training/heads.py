"""Classification heads for embedding training.

The head owns the class centres, normalises embeddings and centres, clamps the cosines and hands
them to an injected margin ``(cos, labels) -> logits``. Softmax cross-entropy, ArcFace, CosFace and
SphereFace are then one module with different margins; a margin that reads image quality (AdaFace,
``needs_norms = True``) also gets the embeddings' norms, ``(cos, labels, norms) -> logits``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SoftmaxMargin(nn.Module):
    """No margin: plain (normalised) softmax cross-entropy logits ``s * cos``.

    Args:
        s: logit scale. Unscaled cosines (s = 1) cannot make a confident softmax and train poorly;
            the default 32 matches the margin heads, so a comparison differs only in the margin.
    """

    def __init__(self, s: float = 32.0) -> None:
        super().__init__()
        self.s = s

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # noqa: ARG002
        return self.s * cos


def arc_margin(target: torch.Tensor, m: float | torch.Tensor) -> torch.Tensor:
    """``cos(theta + m)`` from ``cos(theta)``, continued linearly once ``theta + m > pi``.

    ``cos(theta + m)`` stops decreasing past that point, which would *reward* a sample for moving
    away from its centre; the standard continuation ``cos(theta) - m * sin(m)`` stays monotonic.
    The angle is never computed through ``acos`` (its gradient is infinite at +-1): we use the
    cos/sin addition formula. ``m`` may be a float or a per-sample ``(N, 1)`` tensor.
    """
    m = torch.as_tensor(m, dtype=target.dtype, device=target.device)
    sin = torch.sqrt((1.0 - target * target).clamp_min(1e-9))
    with_margin = target * torch.cos(m) - sin * torch.sin(m)
    return torch.where(target > torch.cos(math.pi - m), with_margin, target - torch.sin(math.pi - m) * m)


class ArcFaceMargin(nn.Module):
    """Additive angular margin (ArcFace): the target logit becomes ``s * cos(theta + m)``
    (monotonic past ``theta + m = pi``, see :func:`arc_margin`)."""

    def __init__(self, s: float = 32.0, m: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= m < math.pi / 2:
            raise ValueError(f"ArcFace margin m={m} must lie in [0, pi/2); typical values are 0.3-0.5")
        self.s, self.m = s, m

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = cos.gather(1, labels[:, None])
        return self.s * cos.scatter(1, labels[:, None], arc_margin(target, self.m))


class CosFaceMargin(nn.Module):
    """Additive cosine margin (CosFace / AM-softmax): the target logit becomes ``s * (cos(theta) - m)``."""

    def __init__(self, s: float = 32.0, m: float = 0.35) -> None:
        super().__init__()
        self.s, self.m = s, m

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        margin = torch.zeros_like(cos).scatter_(1, labels[:, None], self.m)
        return self.s * (cos - margin)


class CombinedMargin(nn.Module):
    """The combined margin of InsightFace: target logit ``s * (cos(m1 * theta + m2) - m3)``.

    ``m1`` is SphereFace's multiplicative angular margin, ``m2`` ArcFace's additive angular margin and
    ``m3`` CosFace's additive cosine margin. Where ``m1 * theta + m2`` passes pi the curve would turn
    back up; from there we continue it linearly in theta (downward), so the logit stays monotonic.
    """

    def __init__(self, s: float = 32.0, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0) -> None:
        super().__init__()
        if m1 < 1.0 or m2 < 0.0 or m3 < 0.0:
            raise ValueError(f"combined margin needs m1 >= 1, m2 >= 0, m3 >= 0; got m1={m1}, m2={m2}, m3={m3}")
        self.s, self.m1, self.m2, self.m3 = s, m1, m2, m3
        self.theta_max = (math.pi - m2) / m1  # past this angle cos(m1*theta + m2) would rise again

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = cos.gather(1, labels[:, None])
        # acos has an infinite gradient at +-1: keep it a hair inside.
        theta = torch.acos(target.clamp(-1 + 1e-7, 1 - 1e-7))
        inside = torch.cos(self.m1 * theta + self.m2) - self.m3
        slope = self.m1  # |d cos(x)/d theta| is at most m1; continue below -1 with that slope
        outside = -1.0 - self.m3 - slope * (theta - self.theta_max)
        with_margin = torch.where(theta <= self.theta_max, inside, outside)
        return self.s * cos.scatter(1, labels[:, None], with_margin)


class ElasticArcMargin(ArcFaceMargin):
    """ElasticFace-Arc (Boutros et al., 2022): ArcFace whose margin is drawn per sample from
    ``N(m, sigma)`` during training, so the decision boundary is not one fixed ring; the mean margin
    is used in eval mode."""

    def __init__(self, s: float = 32.0, m: float = 0.5, sigma: float = 0.05) -> None:
        super().__init__(s, m)
        self.sigma = sigma

    def forward(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.training or self.sigma == 0:
            return super().forward(cos, labels)
        m = (self.m + self.sigma * torch.randn(len(labels), 1, device=cos.device)).clamp(0.0, math.pi / 2 - 1e-3)
        target = cos.gather(1, labels[:, None])
        return self.s * cos.scatter(1, labels[:, None], arc_margin(target, m))


class AdaFaceMargin(nn.Module):
    """AdaFace (Kim et al., 2022): a margin that adapts to image quality, read from the embedding norm.

    Each sample's norm is standardised with running batch statistics, scaled by ``h`` and clipped to
    ``q`` in [-1, 1]. The target logit becomes ``s * (cos(theta - m*q) - m*(1 + q))``: a poor image
    (``q = -1``) gets ArcFace's angular margin ``m``, an average one CosFace's margin ``m``, a good one
    (``q = +1``) an angular bonus and an additive margin ``2m`` — so training stresses the hard samples
    among good images and stops chasing those among images too poor to recognise. The norms are
    detached: the margin reads quality, it does not train it.

    Past ``theta - m*q = pi`` the cosine would rise again; the logit continues linearly downward there
    (and stays flat below an angle of 0), so it never rewards moving away from the centre.

    Args:
        s: logit scale.
        m: margin.
        h: ``q = clip(h * z, -1, 1)`` for a norm ``z`` standard deviations from the mean, so ``1/h``
            deviations reach ``q = +-1`` (the paper's 0.333: three).
        momentum: weight of each batch in the running norm statistics.
    """

    needs_norms = True

    def __init__(self, s: float = 32.0, m: float = 0.4, h: float = 0.333, momentum: float = 0.01) -> None:
        super().__init__()
        if not 0.0 <= m < math.pi / 4:
            raise ValueError(f"AdaFace margin m={m} must lie in [0, pi/4); the paper uses 0.4")
        self.s, self.m, self.h, self.momentum = s, m, h, momentum
        # Start from a wide spread, so early batches get q near 0 (CosFace) until the statistics settle.
        self.register_buffer("norm_mean", torch.tensor(20.0))
        self.register_buffer("norm_std", torch.tensor(100.0))

    def quality(self, norms: torch.Tensor) -> torch.Tensor:
        """``q`` in [-1, 1] per sample, ``(N, 1)``, from the running statistics."""
        return ((norms - self.norm_mean) / (self.norm_std + 1e-3) * self.h).clamp(-1.0, 1.0)[:, None]

    def forward(self, cos: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
        if norms is None:
            raise ValueError(
                "AdaFace reads image quality from the embedding norms: call MarginHead.logits "
                "(it passes them), not the margin alone"
            )
        norms = norms.detach().float().reshape(-1).clamp(1e-3, 100.0)
        if self.training and len(norms) > 1:
            with torch.no_grad():
                self.norm_mean.lerp_(norms.mean(), self.momentum)
                self.norm_std.lerp_(norms.std(), self.momentum)
        q = self.quality(norms)
        target = cos.gather(1, labels[:, None])
        theta = torch.acos(target.clamp(-1 + 1e-7, 1 - 1e-7))  # clamped: acos' gradient is infinite at +-1
        angle = (theta - self.m * q).clamp_min(0.0)
        arc = torch.where(angle <= math.pi, torch.cos(angle), -1.0 - (angle - math.pi))
        return self.s * cos.scatter(1, labels[:, None], arc - self.m * (1.0 + q))


class MarginHead(nn.Module):
    """Owns the class centres and turns embeddings into margin logits.

    Args:
        embedding_dim: size of the backbone's embeddings.
        num_classes: number of training identities.
        margin: module mapping ``(cos, labels)`` to logits.
        subcenters: centres per class (sub-center ArcFace, Deng et al., 2020): a class's cosine is its
            best sub-centre's, so noisy or atypical images can gather at a sub-centre of their own
            instead of pulling the dominant one.
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: nn.Module, subcenters: int = 1) -> None:
        super().__init__()
        self.subcenters = subcenters
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)
        self.margin = margin

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each embedding to each class (its best sub-centre), clamped to [-1, 1]."""
        cos = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))
        if self.subcenters > 1:
            cos = cos.view(len(cos), -1, self.subcenters).amax(dim=2)
        return cos.clamp(-1.0, 1.0)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor, cos: torch.Tensor | None = None) -> torch.Tensor:
        """Margin logits; ``cos`` (from :meth:`cosines`) may be passed in to save computing it twice.
        A margin that reads image quality (``needs_norms``) also gets the embeddings' norms."""
        cos = self.cosines(embeddings) if cos is None else cos
        if getattr(self.margin, "needs_norms", False):
            return self.margin(cos, labels, embeddings.float().norm(dim=1))
        return self.margin(cos, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy loss of the margin logits."""
        return F.cross_entropy(self.logits(embeddings, labels), labels)


MARGINS: dict[str, type[nn.Module]] = {
    "softmax": SoftmaxMargin,
    "arcface": ArcFaceMargin,
    "cosface": CosFaceMargin,
    "combined": CombinedMargin,  # SphereFace: m1 > 1
    "elasticarc": ElasticArcMargin,
    "adaface": AdaFaceMargin,
}


def create_head(name: str, embedding_dim: int, num_classes: int, subcenters: int = 1, **margin_kwargs) -> MarginHead:
    """Build a :class:`MarginHead` with the margin registered as ``name``."""
    try:
        margin_cls = MARGINS[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; choose one of {sorted(MARGINS)}") from None
    return MarginHead(embedding_dim, num_classes, margin_cls(**margin_kwargs), subcenters)

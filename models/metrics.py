"""Verification and identification metrics as pure numpy functions.

They live in ``models`` beside the scoring code because both sides use them: the service reports a
live ID rate over its gallery (``app``) and the evaluation reports LFW's and the held-out people's
(``training``).

A face the detector missed is passed as a row of NaNs: every similarity it takes part in becomes
``-inf``, so it is a miss for positives and a rejection for negatives, never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.scoring import ScoreFunction, cohort_normalised, cosine_matrix  # noqa: F401 (re-exported)


def idrate_pairs(
    query: np.ndarray, query_labels: np.ndarray, distractors: np.ndarray, score: ScoreFunction = cosine_matrix
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative similarities of the seed's ID-rate protocol, exhaustively.

    Positives: every same-person pair within ``query``. Negatives: every different-person pair
    within ``query`` plus every (query, distractor) pair. ``score`` maps two stacks of embeddings to
    their score matrix (cosine unless told).
    """
    labels = np.asarray(query_labels)
    qq = score(query, query)
    upper = np.triu(np.ones(qq.shape, bool), k=1)
    same = labels[:, None] == labels[None, :]
    positives = qq[upper & same]
    negatives = np.concatenate([qq[upper & ~same], score(query, distractors).ravel()])
    return positives, negatives


def threshold_at_fpr(negatives: np.ndarray, fpr: float) -> float:
    """The seed's threshold: the N-th largest negative similarity (0-based), N = round(fpr * #neg)."""
    n = int(round(fpr * len(negatives)))
    n = min(max(n, 0), len(negatives) - 1)
    # np.partition finds the k-th smallest in linear time: the N-th largest is index len - 1 - N.
    k = len(negatives) - 1 - n
    return float(np.partition(negatives, k)[k])


@dataclass
class RatePoint:
    """TPR (or DIR) at one FPR (or FPIR) with the threshold that produced it."""

    fpr: float
    threshold: float
    tpr: float


def tpr_at_fpr(positives: np.ndarray, negatives: np.ndarray, fprs: list[float]) -> list[RatePoint]:
    """For each FPR: the seed's threshold and the share of positives strictly above it."""
    points = []
    for fpr in fprs:
        t = threshold_at_fpr(negatives, fpr)
        points.append(RatePoint(fpr, t, float(np.mean(positives > t))))
    return points


def idrate(
    query: np.ndarray,
    query_labels: np.ndarray,
    distractors: np.ndarray,
    fprs: list[float],
    score: ScoreFunction = cosine_matrix,
) -> list[RatePoint]:
    """The seed's ID rate (TPR@FPR) of ``query`` and ``distractors`` embeddings."""
    positives, negatives = idrate_pairs(query, query_labels, distractors, score)
    return tpr_at_fpr(positives, negatives, fprs)


def roc_curve(positives: np.ndarray, negatives: np.ndarray, num: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) on a log-spaced FPR grid from 1/#neg to 1, for plots."""
    neg = np.sort(negatives)[::-1]
    pos = np.sort(positives)
    fprs = np.unique(np.geomspace(1.0 / len(neg), 1.0, num))
    thresholds = neg[np.clip(np.round(fprs * len(neg)).astype(int), 0, len(neg) - 1)]
    tprs = 1.0 - np.searchsorted(pos, thresholds, side="right") / len(pos)
    return fprs, tprs


def kfold_correct(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """LFW protocol, pair by pair: for each fold, the accuracy-maximising threshold of the other folds
    is applied to it. Returns whether each pair was decided right (bool, same order)."""
    scores, same, folds = np.asarray(scores, np.float64), np.asarray(same, bool), np.asarray(folds)
    correct = np.zeros(len(scores), bool)
    for fold in np.unique(folds):
        train = folds != fold
        t = best_threshold(scores[train], same[train])
        correct[~train] = (scores[~train] > t) == same[~train]
    return correct


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[float, float, list[float]]:
    """LFW 10-fold accuracy (:func:`kfold_correct` per fold). Returns (mean, std, per-fold accuracies)."""
    correct, folds = kfold_correct(scores, same, folds), np.asarray(folds)
    accs = [float(np.mean(correct[folds == fold])) for fold in np.unique(folds)]
    return float(np.mean(accs)), float(np.std(accs)), accs


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[int, int, float]:
    """Paired comparison of two classifiers on the same items: (items only A got right, items only B
    got right, exact two-sided McNemar p-value). Items both got right or wrong carry no information;
    under "A and B are equally good" each discordant item is a fair coin."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    return only_a, only_b, sign_test(only_a, only_b)


def sign_test(wins_a: int, wins_b: int) -> float:
    """Exact two-sided sign test: the chance of a split at least this uneven if each of the
    ``wins_a + wins_b`` contests were a fair coin (ties are left out by the caller)."""
    n, k = wins_a + wins_b, min(wins_a, wins_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 0.5
    return min(1.0, 2 * tail)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold (midway between two sorted scores) that maximises ``(score > t) == same``."""
    finite = np.sort(np.unique(scores[np.isfinite(scores)]))
    candidates = np.concatenate([[finite[0] - 1e-6], (finite[1:] + finite[:-1]) / 2, [finite[-1] + 1e-6]])
    order = np.argsort(scores)
    s, y = scores[order], same[order]
    # For every candidate at once: #(same with score > t) + #(different with score <= t).
    at_or_below = np.searchsorted(s, candidates, side="right")
    pos_above = y.sum() - np.concatenate([[0], np.cumsum(y)])[at_or_below]
    neg_below = np.concatenate([[0], np.cumsum(~y)])[at_or_below]
    return float(candidates[np.argmax(pos_above + neg_below)])


def dir_at_fpir(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    mated: np.ndarray,
    mated_labels: np.ndarray,
    non_mated: np.ndarray,
    fpirs: list[float],
    score: ScoreFunction = cosine_matrix,
) -> list[RatePoint]:
    """Open-set identification rate: a mated probe is a hit when its rank-1 gallery identity is
    correct and its score is above the threshold at which share ``fpir`` of non-mated probes are
    (wrongly) accepted (the seed's N-th-largest convention). ``score`` as in :func:`idrate_pairs`."""
    return dir_from_scores(score(mated, gallery), gallery_labels, mated_labels, score(non_mated, gallery).max(1), fpirs)


def dir_from_scores(
    mated_sims: np.ndarray,
    gallery_labels: np.ndarray,
    mated_labels: np.ndarray,
    non_mated_top: np.ndarray,
    fpirs: list[float],
) -> list[RatePoint]:
    """:func:`dir_at_fpir` from scores already computed: mated probes x gallery, and each non-mated
    probe's best gallery score (however the non-mated probes were searched -- e.g. leave one person
    out, where the probe's own person is removed from its gallery)."""
    gallery_labels, mated_labels = np.asarray(gallery_labels), np.asarray(mated_labels)
    top = mated_sims.argmax(1)
    top_score = mated_sims[np.arange(len(top)), top]
    correct = gallery_labels[top] == mated_labels
    points = []
    for fpir in fpirs:
        t = threshold_at_fpr(non_mated_top, fpir)
        points.append(RatePoint(fpir, t, float(np.mean(correct & (top_score > t)))))
    return points

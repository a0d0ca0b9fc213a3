import numpy as np
import pytest

from models.metrics import (
    best_threshold,
    cohort_normalised,
    cosine_matrix,
    dir_at_fpir,
    idrate,
    idrate_pairs,
    kfold_accuracy,
    kfold_correct,
    mcnemar_exact,
    roc_curve,
    sign_test,
    threshold_at_fpr,
)

# The seed study's known values (query ids 1, 2, 3, 5, 9, 10 in three identities; five distractors).
SEED_QUERY = np.array(
    [
        [1.56, 6.45, -7.68],
        [-1.1, 6.11, -3.0],
        [-0.06, -0.98, -1.29],
        [8.56, 1.45, 1.11],
        [0.7, 1.1, -7.56],
        [0.05, 0.9, -2.56],
    ]
)
SEED_LABELS = np.array([2876, 2876, 2876, 5674, 864, 864])
SEED_DISTRACTORS = np.array(
    [[0.12, -3.23, -5.55], [-1, -0.01, 1.22], [0.06, -0.23, 1.34], [-6.6, 1.45, -1.45], [0.89, 1.98, 1.45]]
)


def test_idrate_matches_the_seed_values():
    points = idrate(SEED_QUERY, SEED_LABELS, SEED_DISTRACTORS, [0.5, 0.3, 0.1])
    assert [p.threshold for p in points] == pytest.approx([-0.011982733, 0.337142658, 0.701307100], abs=1e-6)
    assert [p.tpr for p in points] == [0.75, 0.5, 0.5]


def test_idrate_pair_counts_are_exhaustive():
    positives, negatives = idrate_pairs(SEED_QUERY, SEED_LABELS, SEED_DISTRACTORS)
    assert len(positives) == 3 + 1  # three pairs in 2876, one in 864
    assert len(negatives) == (15 - 4) + 6 * 5


def test_threshold_is_nth_largest_zero_based():
    negatives = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    assert threshold_at_fpr(negatives, 0.0) == 0.9
    assert threshold_at_fpr(negatives, 0.2) == 0.7  # N = 1
    assert threshold_at_fpr(negatives, 0.4) == 0.5  # N = 2


def test_missing_face_is_a_miss_not_dropped():
    query = SEED_QUERY.copy()
    query[0] = np.nan
    positives, negatives = idrate_pairs(query, SEED_LABELS, SEED_DISTRACTORS)
    assert len(positives) == 4 and np.isneginf(positives).sum() == 2
    assert np.isneginf(negatives).sum() == 3 + 5


def test_cosine_matrix_values():
    sims = cosine_matrix(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 2.0], [3.0, 0.0]]))
    assert sims == pytest.approx(np.array([[0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)]]), abs=1e-6)


def test_best_threshold_separates_when_possible():
    scores = np.array([0.1, 0.9, 0.8, 0.2, 0.7, 0.3])
    same = np.array([0, 1, 1, 0, 1, 0], bool)
    t = best_threshold(scores, same)
    assert 0.3 < t < 0.7
    assert np.all((scores > t) == same)


def test_kfold_accuracy_hand_computed():
    # Fold 0 and fold 1 separable at the same threshold; fold 2 has one pair on the wrong side.
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.6, 0.7])
    same = np.array([1, 0, 1, 0, 0, 1], bool)
    folds = np.array([0, 0, 1, 1, 2, 2])
    mean, std, accs = kfold_accuracy(scores, same, folds)
    assert accs[0] == 1.0 and accs[1] == 1.0
    assert accs[2] == 0.5  # folds 0-1 put the threshold at 0.5, so the different pair at 0.6 is called same
    assert mean == pytest.approx(2.5 / 3)
    assert std == pytest.approx(np.std([1, 1, 0.5]))


def test_dir_at_fpir_hand_computed():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    glabels = np.array(["a", "b"])
    mated = np.array([[0.9, 0.1], [0.2, 0.8], [0.9, 0.3]])  # a (right), b (right), labelled b (wrong rank-1)
    mlabels = np.array(["a", "b", "b"])
    non_mated = np.array([[0.6, 0.8], [-1.0, 0.1]])  # top scores 0.8, ~0.1
    points = dir_at_fpir(gallery, glabels, mated, mlabels, non_mated, [0.5, 0.0])
    # FPIR 0.5: N = 1 -> threshold = the smaller non-mated top score; both correct probes clear it.
    assert points[0].tpr == pytest.approx(2 / 3)
    # FPIR 0: threshold = 0.8; probe a (0.994) clears it, probe b (0.970) too.
    assert points[1].threshold == pytest.approx(0.8)
    assert points[1].tpr == pytest.approx(2 / 3)


def test_cohort_normalised_hand_computed():
    cohort = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    a = np.array([[1.0, 0.0]])  # cohort cosines 1, 0, -1: top-2 mean 0.5
    b = np.array([[0.6, 0.8]])  # cohort cosines 0.6, 0.8, -0.6: top-2 mean 0.7
    score = cohort_normalised(cohort, top_k=2)
    assert score(a, b)[0, 0] == pytest.approx(0.6 - 0.5 * (0.5 + 0.7))
    # top_k beyond the cohort's size averages the whole cohort
    assert cohort_normalised(cohort, top_k=10)(a, b)[0, 0] == pytest.approx(0.6 - 0.5 * (0.0 + 0.8 / 3))


def test_cohort_normalised_keeps_missed_faces_rejected():
    score = cohort_normalised(np.eye(2), top_k=1)
    s = score(np.array([[np.nan, np.nan], [1.0, 0.0]]), np.array([[1.0, 0.0]]))
    assert s[0, 0] == -np.inf and np.isfinite(s[1, 0])


def test_custom_score_reaches_idrate_pairs_and_dir():
    """A score function replaces the cosine everywhere: negating it flips every positive and negative."""

    def neg_cos(a, b):
        return -cosine_matrix(a, b)

    pos, neg = idrate_pairs(SEED_QUERY, SEED_LABELS, SEED_DISTRACTORS)
    pos2, neg2 = idrate_pairs(SEED_QUERY, SEED_LABELS, SEED_DISTRACTORS, neg_cos)
    np.testing.assert_allclose(pos2, -pos)
    np.testing.assert_allclose(neg2, -neg)
    gallery, glabels = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array(["a", "b"])
    point = dir_at_fpir(
        gallery, glabels, np.array([[0.9, 0.1]]), np.array(["a"]), np.array([[0.6, 0.8]]), [0.0], neg_cos
    )[0]
    assert point.threshold == pytest.approx(-0.6)  # the non-mated probe's best score is now -0.6


def test_roc_curve_is_monotonic():
    rng = np.random.default_rng(0)
    fpr, tpr = roc_curve(rng.normal(1, 1, 500), rng.normal(0, 1, 5000))
    assert np.all(np.diff(fpr) > 0) and np.all(np.diff(tpr) >= 0)
    assert 0 <= tpr.min() and tpr.max() <= 1


def test_kfold_correct_matches_the_fold_accuracies():
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.6, 0.7])
    same = np.array([1, 0, 1, 0, 0, 1], bool)
    folds = np.array([0, 0, 1, 1, 2, 2])
    assert kfold_correct(scores, same, folds).tolist() == [True, True, True, True, False, True]


def test_sign_test_known_values():
    assert sign_test(6, 0) == pytest.approx(2 / 64)  # six seeds out of six: 2 * (1/2)^6
    assert sign_test(0, 6) == pytest.approx(2 / 64)
    assert sign_test(5, 1) == pytest.approx(2 * 7 / 64)  # P(X <= 1) = (1 + 6) / 64
    assert sign_test(3, 3) == 1.0
    assert sign_test(0, 0) == 1.0


def test_mcnemar_exact_known_values():
    a = np.array([1] * 10 + [0] * 2 + [1] * 5 + [0] * 3, bool)  # 10 only-A, 2 only-B, 5 both, 3 neither
    b = np.array([0] * 10 + [1] * 2 + [1] * 5 + [0] * 3, bool)
    only_a, only_b, p = mcnemar_exact(a, b)
    assert (only_a, only_b) == (10, 2)
    assert p == pytest.approx(2 * (1 + 12 + 66) / 2**12)  # 0.0386: binomial(12, 1/2) tail, both sides
    assert mcnemar_exact(b, a)[2] == pytest.approx(p)
    assert mcnemar_exact(a, a) == (0, 0, 1.0)
    assert mcnemar_exact([1, 0], [0, 1])[2] == 1.0

import numpy as np
import pytest

from models.metrics import cosine_matrix
from training.fusion import ensemble


def test_ensemble_cosine_is_the_mean_of_the_models_cosines():
    rng = np.random.default_rng(0)
    names = ["p/1", "p/2", "q/1"]
    models = [{n: rng.normal(size=8).astype(np.float32) * rng.uniform(1, 5) for n in names} for _ in range(3)]
    fused = ensemble(models)
    for a in names:
        for b in names:
            expected = np.mean([cosine_matrix(m[a][None], m[b][None])[0, 0] for m in models])
            assert cosine_matrix(fused[a][None], fused[b][None])[0, 0] == pytest.approx(expected, abs=1e-6)
    assert np.linalg.norm(fused["p/1"]) == pytest.approx(1.0, abs=1e-6)


def test_ensemble_keeps_missed_faces_missed():
    models = [{"a": np.ones(4), "b": np.full(4, np.nan)}, {"a": np.ones(4), "b": np.ones(4)}]
    assert np.isnan(ensemble(models)["b"]).any()


def test_ensemble_refuses_caches_of_different_photos():
    with pytest.raises(ValueError, match="other images"):
        ensemble([{"a": np.ones(4)}, {"b": np.ones(4)}])
    with pytest.raises(ValueError, match="at least one"):
        ensemble([])


def test_tabled_cohort_score_equals_the_shipped_cohort_score():
    from models.metrics import cohort_normalised
    from training.score_probes import table_score

    rng = np.random.default_rng(1)
    faces = rng.normal(size=(6, 8)).astype(np.float32)
    faces[2] = np.nan  # a missed face stays rejected
    cohort = rng.normal(size=(5, 8)).astype(np.float32)
    tabled = table_score(faces, cohort, k=2, spread=False)(faces[:3], faces)
    shipped = cohort_normalised(cohort, 2)(faces[:3], faces)
    assert np.array_equal(np.isinf(tabled), np.isinf(shipped))
    assert np.allclose(tabled[np.isfinite(tabled)], shipped[np.isfinite(shipped)], atol=1e-6)
    # S-norm: a face's score to itself is (1 - mu) / sigma of its top-2 cohort cosines.
    snorm = table_score(faces, cohort, k=2, spread=True)(faces[:1], faces[:1])[0, 0]
    top = np.sort(cosine_matrix(faces[:1], cohort)[0])[-2:]
    assert snorm == pytest.approx((1 - top.mean()) / top.std(), rel=1e-5)


def test_whitening_map_whitens_its_covariance():
    from training.score_probes import inverse_sqrt

    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 4))
    cov = a @ a.T + np.eye(4)
    m = inverse_sqrt(cov, shrink=0.0)
    assert np.allclose(m @ cov @ m, np.eye(4), atol=1e-8)

import numpy as np
import pytest

from training.fusion import ensemble
from training.metrics import cosine_matrix


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

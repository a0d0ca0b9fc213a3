import json

import numpy as np
import pytest

from training.seeds import FIGURES, aggregate, identities_for, load_summary, miss_rate, paired, power_law_fit


def summary(lfw: float, shift: float = 0.0) -> dict[str, float]:
    return {f: (lfw if f == "lfw" else 0.5 + shift) for f in FIGURES}


def test_aggregate_is_mean_and_sample_std():
    agg = aggregate([summary(90.0, 0.0), summary(92.0, 0.1), summary(94.0, 0.2)])
    assert agg["lfw"] == pytest.approx((92.0, 2.0))
    assert agg["dir@0.01"] == pytest.approx((0.6, 0.1))
    assert aggregate([summary(91.0)])["lfw"] == (91.0, 0.0)


def test_paired_counts_wins_and_signs():
    a = [summary(90.0, 0.0), summary(91.0, 0.0), summary(92.0, 0.0)]
    b = [summary(91.0, 0.1), summary(90.0, 0.2), summary(93.0, 0.0)]
    diff = paired(a, b)
    assert diff["lfw"]["mean_diff"] == pytest.approx(1 / 3)
    assert (diff["lfw"]["wins_a"], diff["lfw"]["wins_b"]) == (1, 2)
    assert (diff["tpr@0.01"]["wins_a"], diff["tpr@0.01"]["wins_b"]) == (0, 2)  # the tie is left out
    assert diff["tpr@0.01"]["sign_p"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="as many runs"):
        paired(a, b[:2])


def test_power_law_fit_recovers_a_known_law_and_its_crossing():
    ids = np.array([100, 200, 400, 400, 800])
    miss = 0.8 * (ids / 100.0) ** -0.5  # x 2 ** -0.5 per doubling
    a, b = power_law_fit(ids, miss)
    assert b == pytest.approx(-0.5)
    assert 2 ** (a + b * np.log2(100)) == pytest.approx(0.8)
    assert identities_for(0.1, a, b) == pytest.approx(6400)  # 0.8 / 0.1 = 8 = (6400 / 100) ** 0.5
    assert identities_for(0.1, a, 0.2) == float("inf")
    with pytest.raises(ValueError, match="two identity counts"):
        power_law_fit(np.array([100, 100]), np.array([0.1, 0.2]))


def test_miss_rate_uses_percent_for_lfw_only():
    assert miss_rate("lfw", 92.5) == pytest.approx(7.5)
    assert miss_rate("dir@0.01", 0.2) == pytest.approx(0.8)


def test_load_summary_reads_evaluate_and_fusion_outputs(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "metrics.json").write_text(
        json.dumps(
            {
                "lfw_accuracy": {"mean": 0.92, "std": 0.01},
                "idrate": [
                    {"fpr": f, "tpr": 0.9 - i / 10, "threshold": 0.3} for i, f in enumerate([0.1, 0.01, 0.001, 0.0001])
                ],
                "dir_at_fpir": [{"fpr": 0.1, "tpr": 0.35}, {"fpr": 0.01, "tpr": 0.2}],
            }
        )
    )
    fusion = tmp_path / "cohort.json"
    fusion.write_text(
        json.dumps(
            {
                "lfw_accuracy": 92.0,
                "lfw_std": 1.0,
                "tpr_at_fpr": {"0.1": 0.9, "0.01": 0.8, "0.001": 0.7, "0.0001": 0.6},
                "dir_at_fpir": {"0.1": 0.35, "0.01": 0.2},
            }
        )
    )
    for path in (report, fusion):
        got = load_summary(path)
        assert got["lfw"] == pytest.approx(92.0)
        assert [got["tpr@0.1"], got["tpr@0.0001"], got["dir@0.01"]] == pytest.approx([0.9, 0.6, 0.2])
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        load_summary(tmp_path / "missing")


def assert_drawn(path):
    """The file is a PNG with a drawing on it: several colours (the axes, the series), mostly a
    white background -- not an empty or blank canvas."""
    import cv2

    image = cv2.imread(str(path))
    assert image is not None and min(image.shape[:2]) > 200, path
    colours = {tuple(c) for c in image.reshape(-1, 3)[::7]}
    white = np.mean(image.min(2) > 245)
    assert len(colours) > 20 and 0.5 < white < 0.995, (len(colours), white)
    # Something coloured was plotted (a series), not only grey axes and text.
    assert (image.max(2).astype(int) - image.min(2) > 60).any()


def test_learning_curve_plot_writes_a_figure(tmp_path):
    from training.plots import learning_curve_plot

    ids = np.array([100, 200, 400])
    miss = {"dir@0.01": np.array([0.9, 0.85, 0.8])}
    a, b = power_law_fit(ids, miss["dir@0.01"])
    learning_curve_plot(tmp_path / "curve.png", ids, miss, {"dir@0.01": (a, b)}, {"dir@0.01": 0.5})
    assert_drawn(tmp_path / "curve.png")


def test_seeds_scatter_plot_writes_a_figure(tmp_path):
    from training.plots import seeds_scatter_plot

    groups = {"a": [summary(91.0, 0.0), summary(92.0, 0.1)], "b": [summary(90.5, 0.2)]}
    seeds_scatter_plot(tmp_path / "seeds.png", groups, "lfw", "dir@0.01")
    assert_drawn(tmp_path / "seeds.png")

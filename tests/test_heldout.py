"""The held-out people's protocol (training.heldout) on vectors whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import cosine_matrix
from training.heldout import fpr_check, idrate_metrics
from training.paired_heldout import compare_people, person_rates


def people_and_vectors(n_people: int, per_person: int, singles: int, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    people, emb = {}, {}
    for p in range(n_people + singles):
        centre = rng.normal(size=64)
        names = [f"p{p}/{i}.png" for i in range(per_person if p < n_people else 1)]
        people[f"p{p}"] = names
        for n in names:
            v = centre + rng.normal(scale=spread, size=64)
            emb[n] = (v / np.linalg.norm(v)).astype(np.float32)
    return people, emb


def test_separable_people_are_all_found_and_counted():
    people, emb = people_and_vectors(20, 3, 150, spread=0.05)
    result = idrate_metrics(emb, people, cosine_matrix)
    counts = result["idrate_counts"]
    assert counts == {
        "identities": 170,
        "query": 60,
        "distractors": 150,
        "positives": 60,
        "negatives": 60 * 59 // 2 - 60 + 60 * 150,
    }
    assert [p["tpr"] for p in result["idrate"]] == [1.0, 1.0, 1.0, 1.0]
    assert [p["tpr"] for p in result["dir_at_fpir"]] == [1.0, 1.0]
    assert result["open_set_counts"]["non_mated_are"] == "single-photo people"
    thresholds = [result["thresholds"][k] for k in ("0.1", "0.01", "0.001")]
    assert thresholds == sorted(thresholds)  # a lower FPR needs a higher threshold


def test_without_single_photo_people_each_person_is_left_out_of_the_gallery_in_turn():
    people, emb = people_and_vectors(30, 3, 0, spread=0.05)
    result = idrate_metrics(emb, people, cosine_matrix)
    assert result["open_set_counts"]["non_mated"] == 30
    assert result["open_set_counts"]["non_mated_are"].startswith("each person's last photo")
    # Strangers to the gallery are unlike everyone in it: the threshold sits far below a mate's score.
    assert [p["tpr"] for p in result["dir_at_fpir"]] == [1.0, 1.0]


def test_with_all_probes_each_mated_probe_is_also_searched_as_a_stranger_without_its_own_person():
    # Every photo equals its person's centre: a mate scores 1.0, so a probe searched against a gallery
    # that still held its own person would set the non-mated threshold at 1.0 and no mate would pass.
    people, emb = people_and_vectors(30, 4, 0, spread=0.0)
    result = idrate_metrics(emb, people, cosine_matrix)
    assert result["open_set_counts"]["mated"] == result["open_set_counts"]["non_mated_all_probes"] == 90
    assert result["open_set_counts"]["non_mated"] == 30  # the last-photo rule: one search per person
    assert [p["tpr"] for p in result["dir_at_fpir_all_probes"]] == [1.0, 1.0]
    # People close enough to be confused: the 90 strangers' searches set a threshold of their own.
    people, emb = people_and_vectors(30, 4, 0, spread=1.2)
    result = idrate_metrics(emb, people, cosine_matrix)
    last, every = result["dir_at_fpir"], result["dir_at_fpir_all_probes"]
    assert all(0.0 < p["tpr"] < 1.0 for p in every)
    assert [p["threshold"] for p in every] != [p["threshold"] for p in last]


def test_fpr_check_measures_the_share_of_negatives_above_each_threshold():
    negatives = np.arange(10000) / 10000  # 0, 0.0001, ..., 0.9999
    check = fpr_check({"0.01": 0.98995, "0.001": 0.99895, "0.0001": 2.0}, negatives)
    assert [c["measured_fpr"] for c in check] == pytest.approx([0.01, 0.001, 0.0])
    assert [c["nominal_fpr"] for c in check] == [1e-2, 1e-3, 1e-4]


def test_the_paired_comparison_finds_the_model_whose_photos_sit_closer_to_their_person():
    # The same 40 people and photos (same seed), B's vectors with half A's scatter around each person.
    people, emb_a = people_and_vectors(40, 4, 0, spread=1.2)
    _, emb_b = people_and_vectors(40, 4, 0, spread=0.6)
    rates_a, rates_b = person_rates(emb_a, people, cosine_matrix), person_rates(emb_b, people, cosine_matrix)
    assert set(rates_a) == {"tpr@0.1", "tpr@0.01", "tpr@0.001", "tpr@0.0001", "dir@0.1", "dir@0.01"}
    assert all(len(r) == 40 for r in rates_a.values())
    result = compare_people(rates_a, rates_b)
    for point in ("tpr@0.01", "dir@0.01"):
        r = result[point]
        assert r["people_b_better"] + r["people_a_better"] + r["people_tied"] == 40
        assert r["mean_b"] > r["mean_a"] and r["people_b_better"] > r["people_a_better"], (point, r)
        assert r["sign_test_p"] < 0.01, (point, r)
    # A model against itself: every person tied, nothing to find.
    same = compare_people(rates_a, rates_a)
    assert all(r["people_tied"] == 40 and r["sign_test_p"] == 1.0 for r in same.values())

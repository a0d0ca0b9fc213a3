"""The held-out people's protocol (training.heldout) on vectors whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import cosine_matrix
from training.heldout import fpr_check, idrate_metrics


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

"""LFW protocol plumbing on the real files."""

from pathlib import Path

import numpy as np

from models.types import Detection
from training import lfw
from training.evaluate import split_idrate, split_open_set


def test_pairs_txt_has_ten_folds_of_300_plus_300(data: Path):
    pairs = lfw.read_pairs(data / "lfw" / "pairs.txt")
    assert len(pairs) == 6000
    assert sum(p.same for p in pairs) == 3000
    assert {p.fold for p in pairs} == set(range(10))
    assert all(
        (data / "lfw" / "images" / p.a).exists() and (data / "lfw" / "images" / p.b).exists()
        for p in pairs[:50] + pairs[-50:]
    )


def test_seed_split_sizes_match_the_data_readme(data: Path):
    people = lfw.list_people(data / "lfw" / "images")
    assert len(people) == 5749 and sum(len(v) for v in people.values()) == 13233
    query, labels, distractors = split_idrate(people)
    assert len(query) == 9164 and len(distractors) == 4069 and len(set(labels)) == 1680
    gallery, mated, non_mated = split_open_set(people)
    assert len(gallery) == 1680 and len(mated) == 9164 - 1680 and len(non_mated) == 4069


def test_central_face_prefers_the_centred_box():
    off = Detection(np.array([0, 0, 40, 40], np.float32), 0.99, np.zeros((5, 2)))
    centred = Detection(np.array([80, 80, 130, 130], np.float32), 0.95, np.zeros((5, 2)))
    assert lfw.central_face([off, centred], (209, 209, 3)) is centred
    assert lfw.central_face([], (209, 209, 3)) is None

"""The CelebA dataset builder on a tiny git repository made here, from real photos: read by blob id,
detected and aligned as the training crops are, checked against each identity's other photos,
merged, split into training and held-out people, resumable and idempotent."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.celeba import agreement, duplicate_pairs, main, read_manifest, union_groups
from training.splits import celeba_folder, hash_selects, is_heldout

pytestmark = pytest.mark.slow


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, files: dict[str, Path]) -> tuple[Path, dict[str, str]]:
    """A git repository holding ``files`` (name -> source photo); returns its git dir and blob ids."""
    root.mkdir(parents=True)
    git("init", "-q", cwd=root)
    for name, src in files.items():
        shutil.copyfile(src, root / name)
    git("add", ".", cwd=root)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "photos", cwd=root)
    return root / ".git", {name: git("hash-object", name, cwd=root) for name in files}


def first_heldout_id(start: int) -> int:
    return next(i for i in range(start, start + 1000) if hash_selects(i))


@pytest.fixture(scope="module")
def built(tmp_path_factory, data: Path):
    tmp = tmp_path_factory.mktemp("celeba")
    photos = data / "photos" / "known_people"
    knn = photos / "knn_examples"
    held_id = first_heldout_id(5000)
    blank = tmp / "blank.jpg"  # a photo with no face (dogs.jpg has dog faces MTCNN scores above 0.5)
    cv2.imwrite(str(blank), np.tile(np.linspace(0, 255, 200, dtype=np.uint8)[:, None, None], (1, 160, 3)))
    a_files = {
        "000001.jpg": photos / "obama.jpg",
        "000002.jpg": photos / "obama2.jpg",
        "000003.jpg": knn / "test" / "obama1.jpg",
        "000004.jpg": photos / "biden.jpg",
    }
    b_files = {
        "000005.jpg": knn / "train" / "kit_harington" / "john1.jpeg",
        "000006.jpg": knn / "train" / "kit_harington" / "john2.jpeg",
        "000007.jpg": blank,
        "000008.jpg": knn / "test" / "kit_with_rose.jpg",
    }
    git_a, blobs_a = make_repo(tmp / "repo_a", a_files)
    git_b, blobs_b = make_repo(tmp / "repo_b", b_files)
    rows = [("a", blobs_a[f], f, 101) for f in a_files]
    rows += [
        ("b", blobs_b["000005.jpg"], "000005.jpg", held_id),
        ("b", blobs_b["000006.jpg"], "000006.jpg", held_id),
        ("b", blobs_b["000007.jpg"], "000007.jpg", 103),
        ("b", blobs_b["000008.jpg"], "000008.jpg", 104),
        ("b", "0" * 40, "000009.jpg", 104),  # a blob the repository does not hold
        ("a", blobs_a["000001.jpg"], "000010.jpg", 105),
    ]  # already in the shared set
    manifest = tmp / "manifest.tsv.gz"
    with gzip.open(manifest, "wt") as f:
        f.write("source\tblob\tfile\tceleba_id\n" + "".join(f"{s}\t{b}\t{fi}\t{i}\n" for s, b, fi, i in rows))
    # The shared set: celeba_105 already holds 000010; a base (re-aligned) tree with one other person.
    shared = tmp / "shared"
    (shared / "celeba_105").mkdir(parents=True)
    (shared / "pins_someone").mkdir()
    crop = np.full((112, 112, 3), 128, np.uint8)
    for folder, name in [("celeba_105", "000010"), ("pins_someone", "a")]:
        cv2.imwrite(str(shared / folder / f"{name}.jpg"), crop)
    base = tmp / "base"
    shutil.copytree(shared, base)
    out = tmp / "out"
    argv = [
        "--git",
        f"a={git_a}",
        "--git",
        f"b={git_b}",
        "--manifest",
        str(manifest),
        "--shared",
        str(shared),
        "--base",
        str(base),
        "--out",
        str(out),
        "--min-agreement",
        "0.55",
    ]
    main(argv + ["--shard", "0/2"])
    main(argv + ["--shard", "1/2"])
    main(argv)
    return {"out": out, "argv": argv, "held_id": held_id, "manifest": manifest}


def test_every_photo_is_accounted_for(built):
    out = built["out"]
    report = json.loads((out / "build.json").read_text())
    assert report["manifest_photos"] == 10 and report["already_in_shared_set"] == 1
    assert report["status"] == {"ok": 7, "no_face": 1, "missing_blob": 1}
    assert report["faces_found"]["2"] == 1 or report["faces_found"].get("3+", 0) == 1  # kit_with_rose
    records = [json.loads(line) for p in (out / "records").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(r["file"] for r in records) == [f"{i:06d}.jpg" for i in range(1, 10)]


def test_crops_are_112px_template_crops_of_the_chosen_face(built):
    crops = sorted((built["out"] / "crops").glob("*/*.png"))
    assert len(crops) == 7
    for path in crops:
        image = cv2.imread(str(path))
        assert image.shape == (112, 112, 3)
    # kit_with_rose.jpg has two faces; the one nearest the centre was kept and recorded as chosen.
    record = next(
        json.loads(line)
        for p in (built["out"] / "records").glob("*.jsonl")
        for line in p.read_text().splitlines()
        if "000008" in line
    )
    assert record["status"] == "ok" and record["faces"] >= 2


def test_a_face_that_disagrees_with_its_identity_is_dropped(built):
    report = json.loads((built["out"] / "build.json").read_text())
    assert report["dropped_disagreeing_files"] == ["000004.jpg"]  # Biden among Obamas: 0.41 vs 0.73-0.83
    assert sorted(p.name for p in (built["out"] / "train" / "celeba_101").iterdir()) == [
        "000001.png",
        "000002.png",
        "000003.png",
    ]


def test_heldout_people_never_reach_the_training_tree(built):
    out, held = built["out"], celeba_folder(built["held_id"])
    assert (out / "heldout" / held).is_dir() and not (out / "train" / held).exists()
    assert len(list((out / "heldout" / held).iterdir())) == 2
    train = {p.name for p in (out / "train").iterdir()}
    assert {"pins_someone", "celeba_105", "celeba_101", "celeba_104"} <= train
    # The shared person keeps its base crop; the photo the shared set already had was not made again.
    assert [p.name for p in (out / "train" / "celeba_105").iterdir()] == ["000010.jpg"]


def test_rerun_does_no_work_and_gives_the_same_tree(built):
    out = built["out"]
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*") if "embeddings" not in p.name)
    main(built["argv"])
    after = sorted(str(p.relative_to(out)) for p in out.rglob("*") if "embeddings" not in p.name)
    assert before == after
    lines = sum(len(p.read_text().splitlines()) for p in (out / "records").glob("*.jsonl"))
    assert lines == 9  # nothing recorded twice


def test_manifest_columns_are_checked(tmp_path: Path):
    bad = tmp_path / "m.tsv"
    bad.write_text("file\tblob\n")
    with pytest.raises(ValueError, match="source, blob, file, celeba_id"):
        read_manifest(bad)


def test_split_rule_is_a_function_of_the_id_alone_and_spares_the_shared_people():
    ids = range(1, 10178)
    held = [i for i in ids if hash_selects(i)]
    assert 0.04 < len(held) / len(ids) < 0.06
    assert not is_heldout(held[0], shared_ids={held[0]}) and is_heldout(held[0], shared_ids=set())


def test_agreement_flags_the_odd_one_out_and_union_joins_transitively():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    rows = np.stack([centre + rng.normal(scale=0.3, size=16) for _ in range(4)] + [rng.normal(size=16)])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    scores = agreement(rows)
    assert scores.argmin() == 4 and scores[:4].min() > 0.8
    assert union_groups(5, [(0, 1), (3, 1), (2, 4)]) == [0, 0, 2, 0, 2]


def test_duplicates_are_mutual_nearest_identities_so_look_alikes_cannot_chain():
    # a-b are one person (0.95); c is close to b (0.85) but b's nearest is a; d-e are far apart.
    angles = np.radians([0.0, 18.0, 50.0, 120.0, 200.0])
    means = np.stack([np.cos(angles), np.sin(angles)], 1)
    assert duplicate_pairs(means, 0.8) == [(0, 1)]
    assert duplicate_pairs(means, 0.96) == []

"""Build the CelebA training identities from the manifest and the fetched git repositories.

    python -m training.realign --landmarks models/weights/landmarks_integral_96.pt \\
        --out ~/.cache/facerec/realigned/landmarks_integral_96          # the shared set's crops (4 min)
    python -m training.celeba \\
        --git shahar=/work/.mirror/ShaharKSegal+CelebA_Samples/repo \\
        --git yun=/work/.mirror/yunjeongyong+Generative-Inpainting-pytorch-master/repo \\
        --git nikhil=/work/.mirror/Nikhil4902+CelebA_Dataset/repo \\
        --git trung=/work/.mirror/Trung-Jeager-2019+validation/repo \\
        --base ~/.cache/facerec/realigned/landmarks_integral_96 --out ~/.cache/facerec/celeba [--shard 0/2]

(``fetch github:OWNER/NAME`` with the search tool brings each repository; ``../shared/data/celeba/README.md``.)

Two stages, both resumable and idempotent (run the same command again: finished work is skipped):

1. **Crops.** Every manifest row is read by blob id with one ``git cat-file --batch`` per repository,
   and made into a training crop exactly as the shipped embedder's crops were
   (``training.realign``): padded with black, detected by our MTCNN cascade (minimum face 20 px,
   score 0.5), the face nearest the centre chosen (CelebA's labelled face is centred; the number of
   faces found is recorded), its 68 points predicted by our landmark network and the five template
   points derived from them, then warped onto the 112 px ArcFace template and written losslessly as
   ``crops/celeba_<id>/<file>.png``. What happened to each photo is appended to
   ``records/*.jsonl``. Photos that the shared training set already holds (same CelebA file in its
   ``celeba_<id>`` folder) are not made twice. ``--shard i/n`` splits this stage over processes.
2. **Checks and the training tree** (after every shard is done; run once more without ``--shard``, and
   with ``--threads 2`` on two cores: one process embeds every crop, ~18 min instead of ~31 on one thread).
   Every crop is embedded by ``--weights`` (default: the pre-CelebA embedder
   ``arcface_iresnet18_half_80_lm68_light.pt`` that made the committed build, so a rebuild drops and
   merges the same photos whichever model is shipped), and
   - a photo whose face disagrees with its identity's other photos (cosine to the mean of the
     others below ``--min-agreement``; identities of 3 or more photos) is dropped: a wrong face
     picked in a group shot, or a CelebA label mistake;
   - identities whose mean faces are nearly the same (cosine above ``--duplicate-cosine``, joined
     transitively) are merged into one class: one person under two CelebA numbers must not be two
     classes that the loss pushes apart;
   - the held-out people (``training.splits``) are written to ``heldout/`` and never to ``train/``.
   ``train/`` then holds one folder per identity: the ``--base`` folders (the shared set's crops,
   symbolic links) with the CelebA photos merged into the ``celeba_<id>`` folders of the same
   people. ``build.json`` reports every count.

The committed build (``reports/celeba/build.json``) and the shipped embedder's crops were made with the
cascade ``facerec-mtcnn-1``; since ``facerec-mtcnn-2`` the cascade reads its pyramid and candidate crops
from halvings of the photo (``models/mtcnn.py``), so a rebuild finds the same faces with boxes and
points that differ by a pixel or so, and may keep or drop a few photos near the thresholds.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from models import DEFAULT_LANDMARK_WEIGHTS, WEIGHTS_DIR
from training.config import data_root
from training.splits import celeba_folder, is_heldout, shared_celeba_ids

log = logging.getLogger("training.celeba")
#: The embedder the committed build was checked with; --min-agreement and --duplicate-cosine are on its scale.
CHECK_WEIGHTS = WEIGHTS_DIR / "arcface_iresnet18_half_80_lm68_light.pt"


@dataclass(frozen=True)
class Row:
    """One manifest line: which repository holds the photo, its blob, CelebA's file name and identity."""

    source: str
    blob: str
    file: str
    celeba_id: int

    @property
    def stem(self) -> str:
        return Path(self.file).stem


def read_manifest(path: Path) -> list[Row]:
    """The manifest's rows (``source blob file celeba_id``, tab-separated, gzip or plain)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[:4] != ["source", "blob", "file", "celeba_id"]:
            raise ValueError(f"{path}: expected the columns source, blob, file, celeba_id; got {header}")
        rows = [
            Row(s, b, fi, int(i)) for s, b, fi, i in (line.rstrip("\n").split("\t")[:4] for line in f if line.strip())
        ]
    return sorted(rows, key=lambda r: (r.celeba_id, r.file))


class BlobReader:
    """Reads blobs from a bare git directory through one long-lived ``git cat-file --batch``."""

    def __init__(self, git_dir: Path) -> None:
        if not (Path(git_dir) / "objects").is_dir():
            raise FileNotFoundError(f"{git_dir} is not a git directory (no objects/); pass the path fetch printed")
        self.proc = subprocess.Popen(
            ["git", f"--git-dir={git_dir}", "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def read(self, blob: str) -> bytes | None:
        """The blob's bytes, or ``None`` when the repository does not hold it."""
        self.proc.stdin.write(blob.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().decode().split()
        if len(header) < 3 or header[1] == "missing":
            return None
        data = self.proc.stdout.read(int(header[2]))
        self.proc.stdout.read(1)  # the newline after the contents
        return data if header[1] == "blob" else None

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def _records(out: Path) -> dict[str, dict]:
    """What stage 1 recorded so far, by CelebA file name (every shard's file)."""
    done = {}
    for path in sorted((out / "records").glob("*.jsonl")):
        with open(path) as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    done[rec["file"]] = rec
    return done


def shared_files(base_src: Path) -> set[str]:
    """CelebA file stems already in the shared training set's ``celeba_<id>`` folders."""
    return {f"{p.parent.name}/{p.stem}" for p in Path(base_src).glob("celeba_*/*") if p.is_file()}


def build_crops(
    rows: list[Row], git_dirs: dict[str, Path], out: Path, landmarks: Path, already: set[str], shard: tuple[int, int]
) -> Counter:
    """Stage 1 for this shard's identities; returns counts of what it did in this call."""
    from models.aligner import FivePointAligner
    from models.detector import MTCNNDetector
    from models.landmarker import Landmarker
    from training.realign import locate, realign_located

    index, count = shard
    mine = [r for r in rows if r.celeba_id % count == index]
    done = _records(out)
    todo = [r for r in mine if r.file not in done and f"{celeba_folder(r.celeba_id)}/{r.stem}" not in already]
    missing_git = sorted({r.source for r in todo} - git_dirs.keys())
    if missing_git:
        raise SystemExit(
            f"the manifest's rows need --git for {missing_git}; fetch those repositories and "
            "pass --git SOURCE=DIR for each"
        )
    counts = Counter(skipped_done=len(mine) - len(todo))
    if not todo:
        return counts
    readers = {s: BlobReader(git_dirs[s]) for s in sorted({r.source for r in todo})}
    detector = MTCNNDetector(min_face_size=20, min_score=0.5)  # training.realign's settings
    landmarker, aligner = Landmarker(landmarks), FivePointAligner()
    (out / "records").mkdir(parents=True, exist_ok=True)
    with open(out / "records" / f"shard_{index}of{count}.jsonl", "a") as log_file:
        for row in tqdm(todo, desc=f"crops {index}/{count}", unit="photo"):
            rec = {"file": row.file, "celeba_id": row.celeba_id, "source": row.source}
            data = readers[row.source].read(row.blob)
            image = None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if data is None:
                rec["status"] = "missing_blob"
            elif image is None:
                rec["status"] = "undecodable"
            else:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                located = locate(image, detector)
                rec["faces"] = located[2] if located else 0
                if located is None:
                    rec["status"] = "no_face"
                else:
                    crop, _ = realign_located(located, landmarker, aligner)
                    folder = out / "crops" / celeba_folder(row.celeba_id)
                    folder.mkdir(parents=True, exist_ok=True)
                    tmp = folder / f".{row.stem}.tmp.png"
                    cv2.imwrite(str(tmp), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                    tmp.replace(folder / f"{row.stem}.png")
                    rec["status"] = "ok"
                    rec["score"] = round(located[1].score, 4)
            counts[rec["status"]] += 1
            log_file.write(json.dumps(rec) + "\n")
            log_file.flush()
    for reader in readers.values():
        reader.close()
    return counts


def agreement(emb: np.ndarray) -> np.ndarray:
    """Each unit row's cosine to the normalised mean of the other rows of its identity."""
    total = emb.sum(0, keepdims=True)
    others = total - emb
    others /= np.maximum(np.linalg.norm(others, axis=1, keepdims=True), 1e-12)
    return (emb * others).sum(1)


def union_groups(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    """Root of each of ``n`` items after joining ``pairs`` transitively (union-find)."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return [root(i) for i in range(n)]


def threshold_evidence(
    emb: np.ndarray, scores: np.ndarray, ok: list[Row], means: np.ndarray, id_pos: dict[int, int], dup: float
) -> dict:
    """What the two thresholds are read from (recorded in build.json): each photo's agreement with its
    own identity against its cosine to a random *other* identity's mean face (20,000 photos, seed 0),
    and how many identity pairs pass the duplicate threshold with and without mutual nearness."""
    rng = np.random.default_rng(0)
    sample = rng.choice(len(ok), size=min(20_000, len(ok)), replace=False)
    own = np.array([id_pos[ok[i].celeba_id] for i in sample])
    other = (own + 1 + rng.integers(0, len(means) - 1, len(sample))) % len(means)
    stranger = (emb[sample] * means[other]).sum(1)
    above = sum(int((means[s : s + 1024] @ means.T > dup).sum()) for s in range(0, len(means), 1024))
    pct = lambda v, q: {str(p): round(float(x), 3) for p, x in zip(q, np.percentile(v, q))}  # noqa: E731
    return {
        "own_identity_agreement_percentiles": pct(scores[np.isfinite(scores)], [1, 2, 5, 10, 50]),
        "stranger_mean_cosine_percentiles": pct(stranger, [50, 90, 99, 99.9]),
        # every non-empty mean matches itself once: not a pair
        "identity_pairs_above_duplicate_cosine": (above - int((np.linalg.norm(means, axis=1) > 0.5).sum())) // 2,
    }


def duplicate_pairs(means: np.ndarray, min_cosine: float, block: int = 1024) -> list[tuple[int, int]]:
    """Pairs of identities that are each other's nearest identity with mean faces closer than
    ``min_cosine``. Mutual nearest neighbours, not every pair above the threshold: with an embedder
    this weak, threshold pairs chain look-alikes transitively into groups of dozens of people (on
    the manifest at 0.8: a group of 89), while mutual pairs cannot chain."""
    nearest = np.zeros(len(means), np.int64)
    best = np.full(len(means), -np.inf, np.float32)
    for start in range(0, len(means), block):
        sim = means[start : start + block] @ means.T
        sim[np.arange(len(sim)), np.arange(start, start + len(sim))] = -np.inf
        nearest[start : start + block], best[start : start + block] = sim.argmax(1), sim.max(1)
    return [
        (i, int(nearest[i]))
        for i in range(len(means))
        if i < nearest[i] and nearest[nearest[i]] == i and best[i] > min_cosine
    ]


def embed_crops(paths: list[Path], weights: Path, cache: Path) -> np.ndarray:
    """Unit embeddings of the crops by ``weights`` (cached by the file list and the weights' version)."""
    from models.embedder import Embedder

    embedder = Embedder(weights)
    key = hashlib.sha1((embedder.version + "|" + "|".join(str(p) for p in paths)).encode()).hexdigest()[:16]
    cache_file = cache / f"embeddings_{key}.npy"
    if cache_file.exists():
        return np.load(cache_file)
    out = np.zeros((len(paths), embedder.dim), np.float32)
    batch = 256
    for start in tqdm(range(0, len(paths), batch), desc="embed", unit="batch"):
        crops = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths[start : start + batch]]
        out[start : start + len(crops)] = embedder.embed(crops)
    np.save(cache_file, out)
    return out


def _link_tree(target: Path, members: dict[str, list[Path]]) -> None:
    """``target/<name>/`` with a symbolic link to each member file (rebuilt from scratch: idempotent);
    an identity left with no file gets no folder."""
    if target.exists():
        shutil.rmtree(target)
    for name, files in members.items():
        if not files:
            continue
        folder = target / name
        folder.mkdir(parents=True)
        for f in files:
            link = folder / f.name
            if link.exists():  # the same CelebA file from two sources: keep one
                continue
            os.symlink(f.resolve(), link)


def finalise(
    rows: list[Row],
    out: Path,
    base: Path,
    base_src: Path,
    weights: Path,
    min_agreement: float,
    duplicate_cosine: float,
    landmarks: Path = DEFAULT_LANDMARK_WEIGHTS,
) -> dict:
    """Stage 2: checks, merges, the held-out split and the ``train/`` and ``heldout/`` trees."""
    records = _records(out)
    shared_ids = shared_celeba_ids(base_src)
    already = shared_files(base_src)
    expected = [r for r in rows if f"{celeba_folder(r.celeba_id)}/{r.stem}" not in already]
    missing = [r.file for r in expected if r.file not in records]
    if missing:
        raise SystemExit(
            f"{len(missing)} photos have no crop record yet (e.g. {missing[:3]}); run the crop "
            "stage for every shard first"
        )
    status = Counter(records[r.file]["status"] for r in expected)
    faces = Counter(min(records[r.file].get("faces", 0), 3) for r in expected)
    ok = [r for r in expected if records[r.file]["status"] == "ok"]
    paths = [out / "crops" / celeba_folder(r.celeba_id) / f"{r.stem}.png" for r in ok]
    emb = embed_crops(paths, weights, out)

    # 1. Faces that disagree with their identity's other photos.
    by_id: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(ok):
        by_id[r.celeba_id].append(i)
    keep = np.ones(len(ok), bool)
    scores = np.full(len(ok), np.nan, np.float32)
    for idx in by_id.values():
        if len(idx) >= 3:
            scores[idx] = agreement(emb[idx])
            keep[idx] = scores[idx] >= min_agreement
    dropped_disagree = [ok[i].file for i in np.flatnonzero(~keep)]

    # 2. One person under two numbers: identity means that nearly coincide.
    ids = sorted({r.celeba_id for r in ok})
    id_pos = {c: k for k, c in enumerate(ids)}
    means = np.zeros((len(ids), emb.shape[1]), np.float32)
    for i in np.flatnonzero(keep):
        means[id_pos[ok[i].celeba_id]] += emb[i]
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    pairs = duplicate_pairs(means, duplicate_cosine)
    evidence = threshold_evidence(emb, scores, ok, means, id_pos, duplicate_cosine)
    roots = union_groups(len(ids), pairs)
    groups: dict[int, list[int]] = defaultdict(list)
    for k, r in enumerate(roots):
        groups[r].append(ids[k])

    # 3. The held-out split, and the folder each identity goes to.
    train: dict[str, list[Path]] = {
        p.name: sorted(f for f in p.iterdir() if f.is_file()) for p in sorted(Path(base).iterdir()) if p.is_dir()
    }
    heldout: dict[str, list[Path]] = {}
    merged_groups, heldout_excluded = [], []
    for members in groups.values():
        members = sorted(members)
        if len(members) > 1:
            merged_groups.append(members)
        in_shared = [m for m in members if m in shared_ids]
        held = any(is_heldout(m, shared_ids) for m in members)
        name = celeba_folder(in_shared[0] if in_shared else members[0])
        files = [paths[i] for m in members for i in by_id[m] if keep[i]]
        if held and in_shared:
            heldout_excluded.append(members)  # seen in training by the old model: neither side
        elif held:
            heldout[name] = files
        else:
            train.setdefault(name, [])
            train[name] = train[name] + files
            for m in in_shared[1:]:  # two shared folders are one person: one class
                train[name] += train.pop(celeba_folder(m), [])
    train = {n: f for n, f in train.items() if f}
    heldout = {n: f for n, f in heldout.items() if f}
    _link_tree(out / "train", train)
    _link_tree(out / "heldout", heldout)

    celeba_train = {n: len(f) for n, f in train.items() if n.startswith("celeba_")}
    counts = np.array(sorted(len(f) for f in heldout.values()) or [0])
    train_counts = np.array([len(f) for f in train.values()])
    report = {
        "base": str(base),
        "landmarks": str(landmarks),
        "heldout_rule": "training.splits",
        "manifest_photos": len(rows),
        "already_in_shared_set": len(rows) - len(expected),
        "photos_read": len(expected) - status.get("missing_blob", 0),
        "status": dict(status),
        "faces_found": {("3+" if k == 3 else str(k)): v for k, v in sorted(faces.items())},
        "several_faces_chose": "the face nearest the photo's centre",
        "checked_by": str(weights.name),
        "min_agreement": min_agreement,
        "dropped_disagreeing": len(dropped_disagree),
        "threshold_evidence": evidence,
        "dropped_disagreeing_files": dropped_disagree,
        "identities_too_small_to_check": sum(len(v) < 3 for v in by_id.values()),
        "duplicate_cosine": duplicate_cosine,
        "merged_groups": merged_groups,
        "identities_merged_away": sum(len(g) - 1 for g in merged_groups),
        "heldout_excluded_shared": heldout_excluded,
        "train": {
            "identities": len(train),
            "images": int(train_counts.sum()),
            "celeba_identities": len(celeba_train),
            "celeba_images": sum(celeba_train.values()),
            "images_per_identity": {
                "min": int(train_counts.min()),
                "median": float(np.median(train_counts)),
                "max": int(train_counts.max()),
            },
        },
        "heldout": {
            "identities": len(heldout),
            "images": int(counts.sum()),
            "images_per_identity": {
                "min": int(counts.min()),
                "median": float(np.median(counts)),
                "max": int(counts.max()),
            },
        },
    }
    (out / "build.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--git",
        action="append",
        default=[],
        metavar="SOURCE=DIR",
        help="a fetched repository's git directory for a manifest source (repeat for each)",
    )
    parser.add_argument(
        "--base",
        type=Path,
        required=True,
        help="the shared set's training crops (training.realign's --out), merged into train/",
    )
    parser.add_argument("--out", type=Path, default=Path("~/.cache/facerec/celeba"))
    parser.add_argument("--manifest", type=Path, default=None, help="default: <FACEREC_DATA>/celeba/manifest.tsv.gz")
    parser.add_argument(
        "--shared",
        type=Path,
        default=None,
        help="the shared training set, for its celeba_<id> people (default <FACEREC_DATA>/recognition/train)",
    )
    parser.add_argument("--landmarks", type=Path, default=DEFAULT_LANDMARK_WEIGHTS)
    parser.add_argument(
        "--weights",
        type=Path,
        default=CHECK_WEIGHTS,
        help="embedder for the checks (default: the one the thresholds below were read with)",
    )
    # Measured with the shipped embedder on the manifest (reports/celeba.md): a photo's cosine to the
    # mean of a *stranger's* photos has median 0.03 and 99th percentile 0.46; to its own identity's
    # other photos, median 0.67 and 2nd percentile 0.20. Below 0.2 a photo agrees with its identity
    # no better than with a typical stranger: 2% of photos.
    parser.add_argument("--min-agreement", type=float, default=0.2)
    # Mutual nearest identities above 0.8: 158 pairs on the manifest, near the ~190 the audit saw.
    parser.add_argument("--duplicate-cosine", type=float, default=0.8)
    parser.add_argument("--shard", default="0/1", help="i/n: stage 1 for ids with id %% n == i only (no stage 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one per process is most robust)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    git_dirs = {}
    for item in args.git:
        source, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--git expects SOURCE=DIR, got {item!r}")
        git_dirs[source] = Path(path).expanduser()
    index, count = (int(v) for v in args.shard.split("/"))
    if not 0 <= index < count:
        parser.error(f"--shard {args.shard}: expected i/n with 0 <= i < n")
    out, base = args.out.expanduser(), args.base.expanduser()
    if not base.is_dir():
        parser.error(f"--base {base} does not exist; make it first with python -m training.realign")
    rows = read_manifest(args.manifest or data_root() / "celeba" / "manifest.tsv.gz")
    base_src = args.shared or data_root() / "recognition" / "train"
    counts = build_crops(rows, git_dirs, out, args.landmarks, shared_files(base_src), (index, count))
    log.info("crops, this call: %s", dict(counts))
    if count > 1:
        log.info(
            "shard %s done; run once more without --shard (and with --threads set to the cores) to check, merge and write train/",
            args.shard,
        )
        return
    report = finalise(
        rows, out, base, base_src, args.weights, args.min_agreement, args.duplicate_cosine, args.landmarks
    )
    summary = {
        k: v
        for k, v in report.items()
        if not k.endswith("_files") and k not in ("merged_groups", "heldout_excluded_shared")
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

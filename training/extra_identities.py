"""More identities for training: the 300-W faces, one identity each, beside the usual training set.

    python -m training.extra_identities --weights models/weights/arcface_iresnet18_half_80_lm68_light.pt \\
        --base ~/.cache/facerec/realigned/landmarks_integral_96 --out ~/.cache/facerec/plus_300w
    python -m training.train --config training/configs/arcface_iresnet18_half_80_lm68_light.yaml \\
        --set data_dir=~/.cache/facerec/plus_300w --set name=light_w300

The learning curve (reports/losses.md) says identities, not images, bind. The only other faces in the
data folder without LFW's people behind them are the 1,537 300-W landmark crops (AFW and HELEN, Flickr
photos of mostly different people), so each becomes a one-image identity, aligned to the ArcFace
template from its annotated 68 points. Two filters, both from ``--weights``' embeddings:

- possible LFW people are dropped: a face whose cosine to any LFW photo exceeds ``--max-lfw-cosine``
  (default 0.70, where one stranger in ~10^5 pairs lands) may be that person (AFW holds news photos);
- near-duplicates (cosine above ``--duplicate-cosine``, joined transitively) keep one face, so one
  person does not become two classes that the loss pushes apart.

``--out`` gets the base set's identity folders as symbolic links plus one ``w300_<face>`` folder per
kept face; the ``w300_`` names sort after the base set's, so the held-out split is unchanged.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from models.aligner import FivePointAligner
from models.embedder import Embedder
from models.landmarks import five_from_68
from training.config import data_root
from training.evaluate import cached_embeddings
from training.lfw import read_rgb

log = logging.getLogger("training.extra_identities")


def aligned_300w(root: Path) -> tuple[list[str], list[np.ndarray]]:
    """Names and 112x112 RGB crops of the 300-W faces, aligned from their annotated points."""
    aligner = FivePointAligner()
    names, crops = [], []
    with open(root / "landmarks68.csv") as f:
        rows = csv.reader(f)
        next(rows)
        for row in rows:
            points = np.array(row[1:], np.float64).reshape(68, 2)
            crops.append(aligner.align(read_rgb(root / "images" / row[0]), five_from_68(points)))
            names.append(Path(row[0]).stem)
    return names, crops


def select(emb: np.ndarray, lfw_emb: np.ndarray, max_lfw_cosine: float, duplicate_cosine: float) -> np.ndarray:
    """Indices of the faces to keep: none too close to an LFW face, one per near-duplicate group.

    ``emb`` and ``lfw_emb`` are unit rows (LFW rows of missed faces removed)."""
    clean = (emb @ lfw_emb.T).max(1) <= max_lfw_cosine
    close = (emb @ emb.T > duplicate_cosine) & clean[:, None] & clean[None, :]
    group = list(range(len(emb)))  # union-find over the "close" graph

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(close, 1))):
        group[root(int(i))] = root(int(j))
    keep, seen = [], set()
    for i in np.flatnonzero(clean):
        r = root(int(i))
        if r not in seen:
            seen.add(r)
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--weights", type=Path, required=True, help="embedder for the two filters (evaluated on LFW before)"
    )
    parser.add_argument("--base", type=Path, required=True, help="the usual training identity folders")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-lfw-cosine", type=float, default=0.70)
    parser.add_argument("--duplicate-cosine", type=float, default=0.72)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    embedder = Embedder(args.weights)
    lfw_emb = np.stack(list(cached_embeddings(args.weights, embedder).values()))
    lfw_emb = lfw_emb[~np.isnan(lfw_emb).any(1)]
    lfw_emb /= np.linalg.norm(lfw_emb, axis=1, keepdims=True)
    names, crops = aligned_300w(data_root() / "landmarks68" / "300w")
    emb = np.concatenate([embedder.embed(crops[i : i + 128]) for i in range(0, len(crops), 128)])
    keep = select(emb, lfw_emb, args.max_lfw_cosine, args.duplicate_cosine)
    base = sorted(p for p in args.base.expanduser().iterdir() if p.is_dir())
    if any(p.name >= "w300_" for p in base):
        raise ValueError(f"{args.base} has folders that sort after 'w300_'; the held-out split would move")
    out = args.out.expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for folder in base:
        link = out / folder.name
        if not link.exists():
            os.symlink(folder.resolve(), link)
    for i in keep:
        folder = out / f"w300_{names[i]}"
        folder.mkdir(exist_ok=True)
        cv2.imwrite(
            str(folder / f"{names[i]}.jpg"), cv2.cvtColor(crops[i], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
    summary = {
        "faces": len(names),
        "kept": len(keep),
        "base_identities": len(base),
        "max_lfw_cosine": args.max_lfw_cosine,
        "duplicate_cosine": args.duplicate_cosine,
    }
    (out / "extra_identities.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("%s", summary)


if __name__ == "__main__":
    main()

"""The held-out people: where every decision about a model is made (LFW is only reported).

    python -m training.heldout --weights models/weights/<name>.pt [--heldout ~/.cache/facerec/celeba/heldout]

The held-out identities (``training.splits``; built by ``training.celeba`` into ``heldout/``) are
already aligned 112 px crops, made exactly as the training crops are. The protocol is LFW's
ID-rate protocol of this project, on these people: query = every photo of the people with two or
more photos, distractors = the photos of people with one; positives = every same-person pair in
the query, negatives = every different-person pair plus every (query, distractor) pair. Open-set
identification: gallery = each person's first photo, mated probes = the others, non-mated probes
= the single-photo people (with fewer than 100 of them: each person's last photo against the gallery
without that person); ``dir_at_fpir_all_probes`` searches every mated probe as a stranger too
(against the gallery without its own person), for ~9x the non-mated searches.

Faces are scored as the model card says (its cohort score when it has one), as the service scores.
The thresholds the card carries are calibrated here (``CALIBRATION_FPRS``), and
:func:`fpr_check` says how they hold on another set's negatives (LFW's, in the card).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from models import metrics
from models.embedder import Embedder
from models.inputs import resize_crop
from models.pipeline import build_pipeline
from training.evaluate import CALIBRATION_FPRS, FPIRS, FPRS, onnx_cache, pipeline_config  # LFW's points
from training.lfw import read_rgb

log = logging.getLogger("training.heldout")
DEFAULT_HELDOUT = Path.home() / ".cache" / "facerec" / "celeba" / "heldout"


def list_people(root: Path) -> dict[str, list[str]]:
    """Identity folder -> its crops (paths relative to ``root``), sorted, so "first photo" is defined."""
    root = Path(root).expanduser()
    people = (
        {
            d.name: [f"{d.name}/{f.name}" for f in sorted(d.iterdir()) if f.suffix in (".png", ".jpg")]
            for d in sorted(p for p in root.iterdir() if p.is_dir())
        }
        if root.is_dir()
        else {}
    )
    people = {k: v for k, v in people.items() if v}
    if not people:
        raise FileNotFoundError(f"no held-out identities in {root}; build them with python -m training.celeba")
    return people


def webp_roundtrip(crop: np.ndarray, size: int, quality: int) -> np.ndarray:
    """The crop as ``training.gpu_pack`` carries it: at the network's input size, through lossy WebP."""
    ok, buf = cv2.imencode(".webp", resize_crop(crop, size), [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise RuntimeError("WebP encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def embed_people(
    embedder: Embedder,
    root: Path,
    people: dict[str, list[str]],
    cache_dir: Path | None = None,
    batch: int = 256,
    webp_quality: int = 0,
) -> dict[str, np.ndarray]:
    """Unit embedding of every crop (the card's flip TTA), cached by model version, precision and file
    list. ``webp_quality`` > 0 first passes each crop through :func:`webp_roundtrip` (what packing costs)."""
    names = [n for imgs in people.values() for n in imgs]
    tag = f"{embedder.version}|{embedder.card.flip_tta}|{webp_quality}|" + (
        "bf16|" if embedder.precision == "bf16" else ""
    )
    key = hashlib.sha1((tag + "|".join(names)).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / "embeddings" / f"heldout_{key}.npy" if cache_dir else None

    def load(path: Path) -> np.ndarray:
        crop = read_rgb(path)
        return webp_roundtrip(crop, embedder.card.input_size, webp_quality) if webp_quality else crop

    if cache and cache.exists():
        vectors = np.load(cache)
    else:
        vectors = np.concatenate(
            [embedder.embed([load(Path(root) / n) for n in names[i : i + batch]]) for i in range(0, len(names), batch)]
        )
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, vectors)
    return dict(zip(names, vectors))


def idrate_metrics(emb: dict[str, np.ndarray], people: dict[str, list[str]], score) -> dict:
    """TPR@FPR (exhaustive), calibrated thresholds and DIR@FPIR for one set of people; the pairs'
    scores come back under ``_curves`` (positives, negatives) for plots and checks."""
    stack = lambda names: np.stack([emb[n] for n in names])  # noqa: E731
    person = lambda names: np.array([n.split("/")[0] for n in names])  # noqa: E731
    query = [n for imgs in people.values() if len(imgs) >= 2 for n in imgs]
    distractors = [imgs[0] for imgs in people.values() if len(imgs) == 1]
    dim = next(iter(emb.values())).shape[0]
    dstack = stack(distractors) if distractors else np.zeros((0, dim), np.float32)
    positives, negatives = metrics.idrate_pairs(stack(query), person(query), dstack, score)
    multi = {p: imgs for p, imgs in people.items() if len(imgs) >= 2}
    gallery = [imgs[0] for imgs in multi.values()]
    mated = [n for imgs in multi.values() for n in imgs[1:]]
    result = {
        "idrate": [vars(p) for p in metrics.tpr_at_fpr(positives, negatives, FPRS)],
        "idrate_counts": {
            "identities": len(people),
            "query": len(query),
            "distractors": len(distractors),
            "positives": int(len(positives)),
            "negatives": int(len(negatives)),
        },
        "thresholds": {f"{f:g}": metrics.threshold_at_fpr(negatives, f) for f in CALIBRATION_FPRS},
        "_curves": (positives, negatives),
    }
    # Non-mated probes: single-photo people; with fewer than 100 of them, each multi-photo person's
    # last photo searched against a gallery without that person (leave-one-person-out) stands in.
    if len(distractors) >= 100:
        non_mated_top = score(dstack, stack(gallery)).max(1)
        how = "single-photo people"
    else:
        last = stack([imgs[-1] for imgs in multi.values()])
        sims = score(last, stack(gallery))
        np.fill_diagonal(sims, -np.inf)
        non_mated_top = sims.max(1)
        how = "each person's last photo against the gallery without that person"
    mated_sims = score(stack(mated), stack(gallery))
    rates = metrics.dir_from_scores(mated_sims, person(gallery), person(mated), non_mated_top, FPIRS)
    result["dir_at_fpir"] = [vars(p) for p in rates]
    # The same, with every mated probe also searched as a stranger (against the gallery without its
    # own person): as many non-mated searches as mated ones. With one last photo per person, FPIR 1e-2
    # on the 409 held-out people is decided by the 4th highest of ~400 scores, and a few photos move it.
    own = person(mated)[:, None] == person(gallery)[None, :]
    all_probes_top = np.where(own, -np.inf, mated_sims).max(1)
    rates = metrics.dir_from_scores(mated_sims, person(gallery), person(mated), all_probes_top, FPIRS)
    result["dir_at_fpir_all_probes"] = [vars(p) for p in rates]
    # For per-person analyses (training.paired_heldout): the open-set scores and who is who.
    result["_open_set"] = {"mated_sims": mated_sims, "gallery": person(gallery), "mated": person(mated)}
    result["open_set_counts"] = {
        "gallery": len(gallery),
        "mated": len(mated),
        "non_mated": int(len(non_mated_top)),
        "non_mated_are": how,
        "non_mated_all_probes": int(len(all_probes_top)),
    }
    return result


def fpr_check(thresholds: dict[str, float], negatives: np.ndarray, fprs=(1e-2, 1e-3, 1e-4)) -> list[dict]:
    """For each nominal FPR: the calibrated threshold and the share of ``negatives`` above it."""
    return [
        {
            "nominal_fpr": f,
            "threshold": thresholds[f"{f:g}"],
            "measured_fpr": float(np.mean(negatives > thresholds[f"{f:g}"])),
        }
        for f in fprs
    ]


def evaluate_heldout(
    embedder: Embedder, root: Path = DEFAULT_HELDOUT, cache_dir: Path | None = None, webp_quality: int = 0
) -> dict:
    people = list_people(root)
    emb = embed_people(embedder, root, people, cache_dir, webp_quality=webp_quality)
    result = idrate_metrics(emb, people, embedder.score)
    result["scoring"] = embedder.card.scoring
    result["model"] = {"name": embedder.card.name, "version": embedder.version}
    result["heldout_dir"] = str(root)
    return result


def served_embedder(weights: Path, int8: bool = False, cache_dir: Path | None = None) -> Embedder:
    """The embedder as the service runs it on this machine (``models.pipeline.build_pipeline``: its
    runtime and precision); with ``int8``, the card's int8 network, whose version ends in ``-int8``.
    Its exported networks are kept under ``cache_dir`` (``training.evaluate.onnx_cache``)."""
    return build_pipeline(pipeline_config(weights, int8=int8), cache_dir=onnx_cache(cache_dir)).embedder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--heldout", type=Path, default=DEFAULT_HELDOUT)
    parser.add_argument("--out", type=Path, default=None, help="write metrics.json here")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "facerec")
    parser.add_argument(
        "--webp-quality", type=int, default=0, help="measure crops packed as WebP of this quality (training.gpu_pack)"
    )
    parser.add_argument(
        "--embedder-int8", action="store_true", help="the card's int8 embedder on ONNX Runtime (training.quantize)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    embedder = served_embedder(args.weights, args.embedder_int8, args.cache_dir)
    result = evaluate_heldout(embedder, args.heldout.expanduser(), args.cache_dir, args.webp_quality)
    result.pop("_curves")
    result.pop("_open_set")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "heldout.json").write_text(json.dumps(result, indent=2) + "\n")
    keys = ("idrate", "dir_at_fpir", "dir_at_fpir_all_probes", "idrate_counts", "open_set_counts")
    print(json.dumps({k: result[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()

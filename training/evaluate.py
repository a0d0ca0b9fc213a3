"""Evaluate an embedder through the full pipeline on LFW photos (detect -> align -> embed).

    python -m training.evaluate --weights models/weights/arcface_iresnet18_half_80_lm68_light.pt \
        --out reports/lfw/arcface_iresnet18_half_80_lm68_light --update-card

Writes ``metrics.json``, ``report.md`` and PNG plots. Detections are cached in ``--cache-dir``
(default ``~/.cache/facerec``), so later runs only embed.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from models import metrics
from models.embedder import Embedder
from models.pipeline import FacePipeline, PipelineConfig, build_pipeline
from training import lfw, plots
from training.config import data_root

log = logging.getLogger("training.evaluate")
FPRS = [1e-1, 1e-2, 1e-3, 1e-4]
#: Thresholds calibrated into the model card; the service interpolates between them.
CALIBRATION_FPRS = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]
FPIRS = [1e-1, 1e-2]


def split_idrate(people: dict[str, list[str]]) -> tuple[list[str], np.ndarray, list[str]]:
    """The seed's split: query = every photo of people with >= 2 photos, distractors = the rest."""
    query = [n for imgs in people.values() if len(imgs) >= 2 for n in imgs]
    labels = np.array([n.split("/")[0] for n in query])
    distractors = [imgs[0] for imgs in people.values() if len(imgs) == 1]
    return query, labels, distractors


def split_open_set(people: dict[str, list[str]]):
    """Gallery = first photo of each person with >= 2 photos; mated probes = their other photos;
    non-mated probes = the photos of people with one photo."""
    multi = {p: imgs for p, imgs in people.items() if len(imgs) >= 2}
    gallery = [imgs[0] for imgs in multi.values()]
    mated = [n for imgs in multi.values() for n in imgs[1:]]
    non_mated = [imgs[0] for imgs in people.values() if len(imgs) == 1]
    return gallery, mated, non_mated


def compute_metrics(
    emb: dict[str, np.ndarray], people: dict[str, list[str]], pairs: list[lfw.Pair], score=metrics.cosine_matrix
) -> dict:
    """Every figure of the report from the per-image embeddings (NaN rows = no face found).

    ``score`` maps two stacks of embeddings to their score matrix: cosine unless told (the evaluation
    passes the model card's score, as the service matches; ``training.fusion`` its probes')."""
    stack = lambda names: np.stack([emb[n] for n in names])  # noqa: E731
    person = lambda names: np.array([n.split("/")[0] for n in names])  # noqa: E731
    query, labels, distractors = split_idrate(people)
    positives, negatives = metrics.idrate_pairs(stack(query), labels, stack(distractors), score)
    idr = metrics.tpr_at_fpr(positives, negatives, FPRS)
    calib = {f"{f:g}": metrics.threshold_at_fpr(negatives, f) for f in CALIBRATION_FPRS}
    scores = np.array([float(score(emb[p.a][None], emb[p.b][None])[0, 0]) for p in pairs])
    mean, std, folds = metrics.kfold_accuracy(
        scores, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
    )
    gallery, mated, non_mated = split_open_set(people)
    dirs = metrics.dir_at_fpir(
        stack(gallery), person(gallery), stack(mated), person(mated), stack(non_mated), FPIRS, score
    )
    missed = [n for n, v in emb.items() if np.isnan(v).any()]
    return {
        "idrate": [vars(p) for p in idr],
        "idrate_counts": {
            "query": len(query),
            "distractors": len(distractors),
            "positives": int(len(positives)),
            "negatives": int(len(negatives)),
        },
        "thresholds": calib,
        "lfw_accuracy": {"mean": mean, "std": std, "folds": folds},
        "dir_at_fpir": [vars(p) for p in dirs],
        "open_set_counts": {"gallery": len(gallery), "mated": len(mated), "non_mated": len(non_mated)},
        "no_face": {"count": len(missed), "of": len(emb), "images": missed},
        "_curves": (positives, negatives),
    }


def write_report(out: Path, result: dict, card: dict, seconds: float, roc: tuple[np.ndarray, np.ndarray]) -> None:
    """``metrics.json``, the plots and ``report.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    positives, negatives = result["_curves"]
    plots.roc_plots(out, {card["name"]: roc})
    plots.similarity_histogram(
        out / "similarity_hist.png", positives, negatives, title=f"{card['name']}: LFW ID-rate pairs"
    )
    result["model"] = {"name": card["name"], "version": card["version"]}
    result["eval_seconds"] = seconds
    (out / "metrics.json").write_text(json.dumps({k: v for k, v in result.items() if k != "_curves"}, indent=2))
    sc = result.get("scoring", {"method": "cosine"})
    scored = (
        "cosine similarity"
        if sc["method"] == "cosine"
        else f"cosine normalised by the top-{sc['top_k']} mean cosine to a cohort of {sc['cohort_size']} "
        "training-identity centres (models/scoring.py)"
    )
    lines = [
        f"# LFW evaluation: {card['name']}",
        "",
        f"Model version `{card['version']}` (flip TTA {'on' if card.get('flip_tta') else 'off'}); full pipeline on the LFW photos (MTCNN detect -> "
        f"similarity alignment onto the 112x112 template from {card.get('alignment', 'MTCNN five points')} -> embed). "
        f"Scores: {scored}. Evaluated in {seconds:.0f} s.",
        "",
        "## ID rate (seed protocol, exhaustive)",
        "",
        f"{result['idrate_counts']['query']} query photos, {result['idrate_counts']['distractors']} distractors: "
        f"{result['idrate_counts']['positives']:,} positive and {result['idrate_counts']['negatives']:,} negative pairs.",
        "",
        "| FPR | threshold | TPR |",
        "|---|---|---|",
    ]
    lines += [f"| {p['fpr']:g} | {p['threshold']:.4f} | {p['tpr']:.4f} |" for p in result["idrate"]]
    acc = result["lfw_accuracy"]
    lines += [
        "",
        "## LFW 10-fold accuracy (pairs.txt)",
        "",
        f"**{100 * acc['mean']:.2f}% ± {100 * acc['std']:.2f}%** (folds: "
        + ", ".join(f"{100 * a:.1f}" for a in acc["folds"])
        + ")",
        "",
        "## Open-set identification",
        "",
        f"Gallery {result['open_set_counts']['gallery']}, mated probes {result['open_set_counts']['mated']}, "
        f"non-mated probes {result['open_set_counts']['non_mated']}.",
        "",
        "| FPIR | threshold | DIR |",
        "|---|---|---|",
    ]
    lines += [f"| {p['fpr']:g} | {p['threshold']:.4f} | {p['tpr']:.4f} |" for p in result["dir_at_fpir"]]
    nf = result["no_face"]
    lines += [
        "",
        f"Photos where no face was found: **{nf['count']}** of {nf['of']} (counted as misses). Detection: "
        f"`{result['detector']}` (cascade | min score | min face | max side | pyramid factor | P-Net threshold).",
        "",
        "![ROC](roc.png) ![TPR vs FPR](tpr_fpr.png) ![similarities](similarity_hist.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))


def update_card(card_path: Path, result: dict, heldout: dict) -> None:
    """Store the measured metrics in the model card, with thresholds calibrated on the held-out
    people (``heldout``: :func:`training.heldout.evaluate_heldout`'s result) -- never on LFW -- and
    how those thresholds hold on LFW's ID-rate negatives (nominal vs measured FPR)."""
    from training.heldout import fpr_check

    card = json.loads(card_path.read_text())
    card["thresholds"] = heldout["thresholds"]
    card["calibration"] = {
        "set": "held-out CelebA people (training.splits), never trained on; crops made as the training crops",
        "identities": heldout["idrate_counts"]["identities"],
        "negatives": heldout["idrate_counts"]["negatives"],
        "protocol": "ID-rate negatives (training/heldout.py); the threshold at FPR f is the N-th largest negative "
        "score, N = round(f * negatives)",
        "check_on_lfw": fpr_check(heldout["thresholds"], result["_curves"][1]),
    }
    card["metrics_heldout"] = {
        "idrate": heldout["idrate"],
        "dir_at_fpir": heldout["dir_at_fpir"],
        "dir_at_fpir_all_probes": heldout["dir_at_fpir_all_probes"],
        "counts": heldout["idrate_counts"],
        "open_set_counts": heldout["open_set_counts"],
    }
    card["metrics"] = {
        "lfw_10fold_accuracy": {"mean": result["lfw_accuracy"]["mean"], "std": result["lfw_accuracy"]["std"]},
        "idrate": result["idrate"],
        "dir_at_fpir": result["dir_at_fpir"],
        "no_face": {"count": result["no_face"]["count"], "of": result["no_face"]["of"]},
        "detector": result["detector"],
        "protocol": "LFW photos, full pipeline; see training/evaluate.py",
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def pipeline_config(weights: Path, landmark_weights: Path | None = None, int8: bool = False) -> PipelineConfig:
    """The evaluated pipeline: the service's (``models.pipeline.PipelineConfig`` defaults) with these
    weights, aligned by our 68-point network when ``landmark_weights`` is given, with the card's int8
    embedder when ``int8``."""
    if landmark_weights is None:
        return PipelineConfig(weights=weights, embedder_int8=int8)
    return PipelineConfig(weights=weights, aligner="landmarks68", landmark_weights=landmark_weights, embedder_int8=int8)


DEFAULT_CACHE = Path.home() / ".cache" / "facerec"


def onnx_cache(cache_dir: Path | None) -> Path | None:
    """Where the training tools keep the networks exported for the CPU runtimes (``models.runtime``'s
    cache, keyed by weights and code): a tool that builds the pipeline again reads them instead of
    exporting them again (~10 s)."""
    return Path(cache_dir) / "onnx" if cache_dir is not None else None


def embeddings_path(cache_dir: Path, pipeline: FacePipeline, alignment: str = "auto") -> Path:
    """Where the raw LFW embeddings of one pipeline version (TTA setting, alignment, precision) are kept."""
    return embeddings_file(cache_dir, pipeline.version, pipeline.embedder.card.flip_tta, alignment, pipeline.precision)


def embeddings_file(
    cache_dir: Path, version: str, flip_tta: bool, alignment: str = "auto", precision: str = "fp32"
) -> Path:
    suffix = ("" if alignment == "auto" else f"_{alignment}") + ("" if precision == "fp32" else f"_{precision}")
    return Path(cache_dir) / "embeddings" / f"lfw_{version}_flip{int(flip_tta)}{suffix}.npz"


def cached_embeddings(weights: Path, embedder: Embedder, cache_dir: Path = DEFAULT_CACHE) -> dict[str, np.ndarray]:
    """The raw LFW embeddings an earlier ``training.evaluate --weights weights`` (default pipeline:
    MTCNN's five points, at the precision the service's pipeline runs in on this machine) left in
    ``cache_dir``; for probes that re-score them without re-embedding."""
    precision = build_pipeline(pipeline_config(weights), cache_dir=onnx_cache(cache_dir)).precision
    path = embeddings_file(cache_dir, embedder.version, embedder.card.flip_tta, precision=precision)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run python -m training.evaluate --weights {weights} first")
    return load_embeddings(path)


def save_embeddings(path: Path, embeddings: dict[str, np.ndarray]) -> None:
    """Raw embeddings (fp16, names alongside) for the embedding study; a cache, not a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(embeddings)
    np.savez(path, names=np.array(names), vectors=np.stack([embeddings[n] for n in names]).astype(np.float16))


def load_embeddings(path: Path) -> dict[str, np.ndarray]:
    """Inverse of :func:`save_embeddings` (float32 vectors)."""
    with np.load(path) as z:
        return dict(zip(z["names"].tolist(), z["vectors"].astype(np.float32)))


def run_evaluation(
    weights: Path,
    out: Path,
    data: Path | None = None,
    cache_dir: Path | None = DEFAULT_CACHE,
    device: str = "cpu",
    flip_tta: str = "card",
    landmark_weights: Path | None = None,
    alignment: str = "auto",
    scoring: str = "card",
    int8: bool = False,
) -> dict:
    """Evaluate ``weights`` on LFW, write the report to ``out`` and return the metrics.

    Faces are scored as the service scores them (the card's ``scoring``), unless ``scoring="cosine"``.
    The returned dict also carries ``roc`` (FPR, TPR arrays) for plots that compare models.
    """
    root = (data or data_root()) / "lfw"
    t0 = time.perf_counter()
    pipeline = build_pipeline(pipeline_config(weights, landmark_weights, int8), device, cache_dir=onnx_cache(cache_dir))
    if flip_tta != "card":
        pipeline.embedder.card.flip_tta = flip_tta == "on"
    people = lfw.list_people(root / "images")
    names = [n for imgs in people.values() for n in imgs]
    d = pipeline.detector
    detections = lfw.detect_all(d, root / "images", names, cache_dir, d.key)
    raw = lfw.embed_all(pipeline, root / "images", detections, normalize=False, alignment=alignment)
    if cache_dir is not None:
        save_embeddings(embeddings_path(cache_dir, pipeline, alignment), raw)
    emb = {n: v / np.linalg.norm(v) for n, v in raw.items()}  # NaN rows (no face) stay NaN
    score = metrics.cosine_matrix if scoring == "cosine" else pipeline.embedder.score
    result = compute_metrics(emb, people, lfw.read_pairs(root / "pairs.txt"), score)
    result["scoring"] = {"method": "cosine"} if scoring == "cosine" else pipeline.embedder.card.scoring
    # Which cascade and settings found the faces (version | min score | min face | max side | pyramid
    # factor | P-Net threshold): the figures change when detection does, so they say what they were measured with.
    result["detector"] = d.key
    result["runtime"], result["precision"] = pipeline.runtime, pipeline.precision  # where the networks ran
    roc = metrics.roc_curve(*result["_curves"])
    how = (
        "detector box cropped square, no alignment"
        if alignment == "box"
        else f"five points from our 68-point network `{pipeline.landmarker.version}`"
        if pipeline.landmarker
        else "MTCNN's five points"
    )
    card = dict(
        pipeline.embedder.card.raw, flip_tta=pipeline.embedder.card.flip_tta, version=pipeline.version, alignment=how
    )
    write_report(out, result, card, time.perf_counter() - t0, roc)
    result["roc"] = roc
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None, help="shared data root (default FACEREC_DATA)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--update-card", action="store_true", help="write metrics and thresholds into the card")
    parser.add_argument(
        "--flip-tta",
        choices=["card", "on", "off"],
        default="card",
        help="override the card's flip test-time augmentation",
    )
    parser.add_argument(
        "--landmarks",
        type=Path,
        default=None,
        help="align with this 68-point network's weights instead of MTCNN's five points",
    )
    parser.add_argument(
        "--alignment",
        choices=["auto", "box"],
        default="auto",
        help="box: no alignment (the detector box, cropped square) -- the ablation baseline",
    )
    parser.add_argument(
        "--heldout",
        type=Path,
        default=Path("~/.cache/facerec/celeba/heldout"),
        help="the held-out people the card's thresholds are calibrated on (training.celeba)",
    )
    parser.add_argument(
        "--scoring",
        choices=["card", "cosine"],
        default="card",
        help="cosine: plain cosine even when the card scores with cohort normalisation",
    )
    parser.add_argument(
        "--embedder-int8",
        action="store_true",
        help="the card's int8 embedder (training.quantize) on ONNX Runtime, as FACEREC_EMBEDDER_INT8=1 serves it",
    )
    args = parser.parse_args(argv)
    if args.update_card:
        # The card describes what the service serves: any option that measures something else is refused.
        served = PipelineConfig(weights=args.weights)
        differs = served.differences(pipeline_config(args.weights, args.landmarks, args.embedder_int8))
        differs += [
            f"--{k.replace('_', '-')} {v}"
            for k, v in (("flip_tta", args.flip_tta), ("alignment", args.alignment), ("scoring", args.scoring))
            if v not in ("card", "auto")
        ]
        if differs:
            parser.error(
                f"--update-card writes what the service serves into the card, but {differs} differ from "
                "the service's pipeline (models.pipeline.PipelineConfig); drop them, or drop --update-card"
            )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run_evaluation(
        args.weights,
        args.out,
        args.data,
        args.cache_dir,
        args.device,
        args.flip_tta,
        args.landmarks,
        args.alignment,
        args.scoring,
        args.embedder_int8,
    )
    if args.update_card:
        from training.heldout import evaluate_heldout, served_embedder

        embedder = served_embedder(args.weights, cache_dir=args.cache_dir)  # reads the networks exported above
        heldout = evaluate_heldout(embedder, args.heldout.expanduser(), args.cache_dir)
        update_card(args.weights.with_suffix(".json"), result, heldout)
    log.info(
        "LFW accuracy %.4f ± %.4f; TPR@FPR %s; report in %s",
        result["lfw_accuracy"]["mean"],
        result["lfw_accuracy"]["std"],
        {p["fpr"]: round(p["tpr"], 4) for p in result["idrate"]},
        args.out,
    )


if __name__ == "__main__":
    main()

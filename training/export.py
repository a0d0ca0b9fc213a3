"""Export a training run's backbone as a committed weight file plus its model card.

    python -m training.export --run runs/arcface_iresnet18_half_80_lm68_light \
        --out models/weights/arcface_iresnet18_half_80_lm68_light.pt --flip-tta --cohort-top-k 10

The weights are stored in fp16 (half the size; inference loads them back as fp32). With
``--cohort-top-k K`` the head's class centres are saved beside them (``<out>.cohort.npy``) and the
card tells inference to score with cohort normalisation (``models.scoring``); without it, plain
cosine. Metrics and calibrated thresholds (on that score's scale) are added to the card by
``training.evaluate --update-card``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shlex
import subprocess
from pathlib import Path

import numpy as np
import torch
import yaml

from models.inputs import NORMALISATION
from training.config import RESUME_OVERRIDABLE, TrainConfig, config_from_dict, load_config

log = logging.getLogger("training.export")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def training_summary(run: Path) -> dict:
    """Last logged loss / training accuracy and the median throughput of the run."""
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in lines if "img_per_s" in r]  # training records (held-out ones are separate)
    if not records:
        return {}
    ips = sorted(r["img_per_s"] for r in records)
    return {
        "steps": records[-1]["step"],
        "final_loss": records[-1]["loss"],
        "final_train_acc": records[-1]["train_acc"],
        "median_img_per_s": ips[len(ips) // 2],
        "wall_clock_s": records[-1]["time"] - records[0]["time"],
        **(
            {"heldout_during_training": [r for r in lines if "heldout" in r]}
            if any("heldout" in r for r in lines)
            else {}
        ),
    }


def reproduce_config(name: str, run: Path) -> str:
    """The committed config of a run when there is one, else the config saved with the run."""
    committed = Path("training/configs") / f"{name}.yaml"
    return str(committed) if committed.exists() else str(run / "config.yaml")


#: Fields that say where and how fast a run trains, not what it learns (what ``--resume`` may change,
#: but the schedule's length): left out of the card's command.
WHERE_AND_HOW_FAST = RESUME_OVERRIDABLE - {"steps"}


def config_overrides(cfg: TrainConfig, config: str, resumed: bool) -> list[str]:
    """The ``--set key=value`` arguments that make ``config`` (a YAML file) train what ``cfg`` trained: a
    run started with ``--set`` (``training/learning_curve.sh`` sets steps and the share of the people)
    is not the committed config's run, and a card that gave the config alone would reproduce another
    model. ``steps`` is left out when the run was resumed with other lengths: the resume chain sets it."""

    def fields(c: TrainConfig) -> dict:  # augment's fields one by one, as --set augment.flip=0 sets them
        d = c.to_dict()
        return {
            **{k: v for k, v in d.items() if k != "augment"},
            **{f"augment.{k}": v for k, v in d["augment"].items()},
        }

    base, run = fields(load_config(config, [])), fields(cfg)
    skip = WHERE_AND_HOW_FAST | ({"steps"} if resumed else set())
    sets = []
    for key, value in run.items():
        if key not in skip and base.get(key) != value:
            text = yaml.safe_dump(
                list(value) if isinstance(value, tuple) else value, default_flow_style=True, width=10**9
            )
            text = text.removesuffix("...\n").strip()  # a scalar's document ends with '...'
            sets.append(shlex.quote(f"{key}={text}"))
    return sets


def resumed_schedules(run: Path) -> list[dict]:
    """The times a run was resumed with another schedule length, in order (``training.train`` logs
    each: ``{"step", "resumed_with": {"steps"}, "was": {"steps"}}``); with them the card's reproduce
    command runs the same schedules, warm restarts included."""
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in lines if "resumed_with" in r]


def realigned_with(data_dir: Path) -> str | None:
    """The landmark weights ``training.realign`` (or ``training.celeba``) aligned ``data_dir`` with."""
    summaries = sorted(data_dir.glob("realign_*of*.json"))
    if summaries:
        return json.loads(summaries[0].read_text())["landmarks"]
    build = celeba_build(data_dir)
    return build["landmarks"] if build else None


def celeba_build(data_dir: Path) -> dict | None:
    """The report ``training.celeba`` left beside a training tree it built (``<out>/train``)."""
    path = data_dir.parent / "build.json"
    return json.loads(path.read_text()) if data_dir.name == "train" and path.exists() else None


def celeba_summary(build: dict) -> dict:
    """What the card says of a training set built by ``training.celeba``: sources, counts, the split."""
    return {
        "source": "CelebA (Liu et al., ICCV 2015; research use only) photos listed in "
        "FACEREC_DATA/celeba/manifest.tsv.gz, read from public git repositories, merged with the shared set",
        "manifest_photos": build["manifest_photos"],
        "status": build["status"],
        "dropped_disagreeing": build["dropped_disagreeing"],
        "identities_merged_away": build["identities_merged_away"],
        "train": build["train"],
        "heldout": {**build["heldout"], "rule": "training.splits: sha1('celeba:<id>') % 20 == 0, never trained on"},
    }


def export_cohort(head_state: dict, out: Path, top_k: int) -> dict:
    """Save the head's class centres as unit fp16 rows in ``out.with_suffix('.cohort.npy')``; return
    the card's ``scoring`` entry."""
    centres = head_state["weight"].float()
    centres = (centres / centres.norm(dim=1, keepdim=True)).numpy().astype(np.float16)
    path = out.with_suffix(".cohort.npy")
    np.save(path, centres)
    return {
        "method": "cohort",
        "top_k": top_k,
        "cohort_file": path.name,
        "cohort_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "cohort_size": len(centres),
        "cohort_source": "class centres of the training head (one per training identity)",
    }


def export(run: Path, out: Path, flip_tta: bool, cohort_top_k: int = 0) -> Path:
    """Write ``out`` (fp16 state dict), ``out.with_suffix('.json')`` (the card) and, when
    ``cohort_top_k`` > 0, the cohort the card scores with."""
    cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    if cohort_top_k and cfg.loss == "triplet":
        raise ValueError(
            f"{run} was trained with triplet loss: its head has no class centres to use as a "
            "cohort; export without --cohort-top-k"
        )
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in state["backbone"].items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(weights, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    classes = json.loads((run / "classes.json").read_text())
    scoring = export_cohort(state["head"], out, cohort_top_k) if cohort_top_k else {"method": "cosine"}
    landmarks = realigned_with(cfg.resolved_data_dir())
    config = reproduce_config(cfg.name, run)
    resumes = resumed_schedules(run)
    first = "".join(f" --set {arg}" for arg in config_overrides(cfg, config, resumed=bool(resumes)))
    first += f" --set steps={resumes[0]['was']['steps']}" if resumes else ""
    reproduce = f"python -m training.train --config {config}{first}" + "".join(
        f" && python -m training.train --config {config} --resume --set steps={r['resumed_with']['steps']}"
        for r in resumes
    )
    build = celeba_build(cfg.resolved_data_dir())
    if build:
        reproduce = (
            f"python -m training.realign --landmarks {landmarks} --out {build['base']} && "
            f"python -m training.celeba --git SOURCE=DIR ... --base {build['base']} --out "
            f"{Path(cfg.data_dir).parent} && {reproduce}"
        )
    elif landmarks:
        reproduce = f"python -m training.realign --landmarks {landmarks} --out {cfg.data_dir} && {reproduce}"
    card = {
        "name": cfg.name,
        # Flip TTA changes the vectors, so it is part of the version that enrolled faces are tagged with.
        "version": f"{cfg.name}-{digest[:12]}" + ("-flip" if flip_tta else ""),
        "sha256": digest,
        "architecture": cfg.arch,
        "arch_kwargs": {"dropout": 0.0},
        "input_size": cfg.input_size,
        "crop": "112x112 ArcFace 5-point template, resized with INTER_AREA to input_size",
        # The points the training crops were aligned from; serving with the same aligner avoids a
        # train/serve mismatch (FACEREC_ALIGNER).
        "training_alignment": cfg.alignment,
        "normalisation": NORMALISATION,
        "embedding_size": cfg.embedding_dim,
        "embedding_dim": cfg.embedding_dim,
        "flip_tta": flip_tta,
        # How two embeddings are compared; the calibrated thresholds are on this score's scale.
        "scoring": scoring,
        "parameters": sum(v.numel() for v in weights.values() if v.is_floating_point()),
        "training_data": {
            "source": "FACEREC_DATA/recognition/train (research-use licences: Pinterest celebrity faces, "
            "CelebA, University of Essex faces94/grimace); not for commercial use",
            "identities": len(classes),
            "identity_fraction": cfg.identity_fraction,
            "realigned_with": landmarks,  # None: the shared crops, aligned from MTCNN's five points
            **({"celeba": celeba_summary(build)} if build else {}),
        },
        "loss": {"name": cfg.loss, **cfg.loss_kwargs},
        "config": cfg.to_dict(),
        "training": training_summary(run),
        "commit": git_commit(),
        "reproduce": reproduce,
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    log.info("exported %s (%d bytes), version %s", out, out.stat().st_size, card["version"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--flip-tta", action="store_true", help="embed image + mirror at inference")
    parser.add_argument(
        "--cohort-top-k",
        type=int,
        default=0,
        help="score with cohort normalisation over the K nearest class centres (0: cosine)",
    )
    args = parser.parse_args(argv)
    if args.cohort_top_k < 0:
        parser.error(f"--cohort-top-k={args.cohort_top_k} must be 0 (cosine) or a positive count")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    export(args.run, args.out, args.flip_tta, args.cohort_top_k)


if __name__ == "__main__":
    main()

"""Train the 68-point landmark network, then export it with its card.

    python -m training.train_landmarks --config training/configs/landmarks_integral_96.yaml      # --resume to continue
    python -m training.train_landmarks --config training/configs/landmarks_integral_96.yaml --export models/weights/landmarks_integral_96.pt

Training crops come from MTCNN's boxes on the training faces (300-W AFW + HELEN train, YouTube Faces
train) with box jitter, rotation, mirroring (68-point permutation) and colour changes; the loss is the
wing loss on crop pixels. Checkpoints every ``checkpoint_every`` steps; the schedule is tied to steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.inputs import hwc_batch
from models.registry import create_model
from training.config import data_root, load_config
from training.export import git_commit
from training.landmark_data import CropAugment, detector_boxes, make_crop, read_split, wing_loss
from training.loop import RunLog, StopRequest, check_resume, cosine_lr, pick_device, save_atomic, save_config

log = logging.getLogger("training.train_landmarks")


@dataclass
class LandmarkConfig:
    name: str = "landmarks_96"
    arch: str = "landmark_resnet"
    input_size: int = 96
    crop_scale: float = 1.3
    splits: tuple[str, ...] = ("300w_train", "youtube_train")
    # Share of each batch drawn from each split (same order as ``splits``); empty = in proportion
    # to the splits' sizes. YouTube's 3,462 faces are frames of few videos, 300-W's 1,207 are
    # 1,207 different photos: weighting by split keeps the varied set from being drowned.
    split_share: tuple[float, ...] = ()
    batch_size: int = 64
    steps: int = 6000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    bf16: bool = True
    threads: int = 0
    seed: int = 0
    device: str = "auto"  # as the embedder's training: CUDA when present
    checkpoint_every: int = 250
    out_dir: str = "runs"
    augment: CropAugment = field(default_factory=CropAugment)

    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def load_landmark_config(path: str | None, sets: list[str]) -> LandmarkConfig:
    """Defaults < YAML file < ``key=value`` overrides, typed and checked as for the embedder's config."""
    return load_config(path, sets, LandmarkConfig())


def load_training_set(cfg: LandmarkConfig, root: Path | None = None, cache: Path | None = None):
    """Images, points and detector boxes of every training split, concatenated, and each split's size."""
    from models.detector import MTCNNDetector

    root = root or data_root() / "landmarks68"
    cache = cache if cache is not None else Path.home() / ".cache" / "facerec"
    detector = MTCNNDetector(min_score=0.5)
    images, points, boxes, sizes = [], [], [], []
    for split in cfg.splits:
        names, imgs, pts = read_split(root, split)
        boxes.append(detector_boxes(names, imgs, pts, detector, cache, detector.key))
        images += imgs
        points.append(pts)
        sizes.append(len(imgs))
    return images, np.concatenate(points), np.concatenate(boxes), sizes


def sample_probabilities(sizes: list[int], share: tuple[float, ...]) -> np.ndarray | None:
    """Per-face sampling probabilities giving split ``i`` the share ``share[i]`` of every batch;
    ``None`` (uniform over faces) when no share is set."""
    if not share:
        return None
    if len(share) != len(sizes) or min(share) < 0 or sum(share) <= 0:
        raise ValueError(
            f"split_share {list(share)} must give one non-negative share per split "
            f"({len(sizes)} splits) and not all zero"
        )
    total = float(sum(share))
    return np.concatenate([np.full(n, s / total / n) for n, s in zip(sizes, share)])


#: What ``--resume`` may change in a saved landmark run (as ``training.config.RESUME_OVERRIDABLE``).
RESUME_OVERRIDABLE = {"threads", "device", "out_dir", "steps", "checkpoint_every"}


def lr_at(step: int, cfg: LandmarkConfig) -> float:
    return cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps)


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """The crops as the network's input batch, normalised as the service's landmarker does."""
    return torch.from_numpy(hwc_batch(crops))


def train(cfg: LandmarkConfig, resume: bool, data=None) -> Path:
    """Run (or resume) training; ``data`` = (images, points, boxes, split sizes) overrides the shared data (tests)."""
    run = cfg.run_dir()
    ckpt = run / "checkpoint.pt"
    if resume:
        if not ckpt.exists():
            raise FileNotFoundError(f"--resume given but {ckpt} does not exist; drop --resume to start")
        check_resume(run, load_landmark_config(str(run / "config.yaml"), []), cfg, RESUME_OVERRIDABLE)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    images, points, boxes, sizes = data if data is not None else load_training_set(cfg)
    probs = sample_probabilities(sizes, cfg.split_share)
    model = create_model(cfg.arch, input_size=cfg.input_size).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    start = 0
    if resume:
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        rng.bit_generator.state = state["rng"]
        start = state["step"]
    run.mkdir(parents=True, exist_ok=True)
    save_config(run, cfg)
    log.info("%d training faces; %s from step %d on %s", len(images), run, start, device)
    model.train()
    log_file = RunLog(run)
    t0, seen, total = time.perf_counter(), 0, 0.0
    stopping = False
    with StopRequest() as stop:
        for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=cfg.name, unit="step"):
            for group in optimiser.param_groups:
                group["lr"] = lr_at(step, cfg)
            idx = rng.choice(len(images), cfg.batch_size, p=probs)
            pairs = [
                make_crop(images[i], boxes[i], points[i], cfg.input_size, cfg.crop_scale, rng, cfg.augment) for i in idx
            ]
            x = to_tensor(np.stack([c for c, _ in pairs])).to(device)
            y = torch.from_numpy(np.stack([p for _, p in pairs])).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                pred = model(x)
            loss = wing_loss(pred.float() * cfg.input_size, y)
            if not torch.isfinite(loss):  # before the step: the checkpoint keeps the last finite weights
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            seen += len(idx)
            total += loss.item() * len(idx)
            done = step + 1
            if done % 20 == 0 or done == cfg.steps:
                log_file.write(
                    {
                        "step": done,
                        "loss": total / seen,
                        "img_per_s": seen / (time.perf_counter() - t0),
                        "time": time.time(),
                    }
                )
                t0, seen, total = time.perf_counter(), 0, 0.0
            stopping = bool(stop.signum) and done < cfg.steps
            if done % cfg.checkpoint_every == 0 or done == cfg.steps or stopping:
                save_atomic(
                    ckpt,
                    {
                        "step": done,
                        "model": model.state_dict(),
                        "optimiser": optimiser.state_dict(),
                        "rng": rng.bit_generator.state,
                    },
                )
            if stopping:
                break
    log_file.close()
    if stopping:
        log.warning("stopped at step %d of %d by a signal; continue with --resume", done, cfg.steps)
        raise SystemExit(128 + stop.signum)
    return run


def export(run: Path, out: Path) -> Path:
    """fp16 weights + card (architecture, input size, crop scale, data, config, commit)."""
    cfg = load_landmark_config(str(run / "config.yaml"), [])
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()[:12]
    card = {
        "name": cfg.name,
        "version": f"{cfg.name}-{digest}",
        "architecture": cfg.arch,
        "input_size": cfg.input_size,
        "crop_scale": cfg.crop_scale,
        "points": 68,
        "steps": state["step"],
        "training_data": {
            "splits": list(cfg.splits),
            "source": "<FACEREC_DATA>/landmarks68 (300-W AFW + HELEN train, YouTube Faces train; research use only)",
        },
        "config": dataclasses.asdict(cfg),
        "commit": git_commit(),
        "reproduce": f"python -m training.train_landmarks --config {run / 'config.yaml'}",
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--export", type=Path, help="export the finished run to this weight file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_landmark_config(args.config, args.set)
    if args.export:
        export(cfg.run_dir(), args.export)
        return
    train(cfg, args.resume)


if __name__ == "__main__":
    main()

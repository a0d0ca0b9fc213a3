"""Train a face embedder with a margin head.

    python -m training.train --config training/configs/arcface_iresnet18_half_80_lm68_light.yaml
    python -m training.train --config ... --resume          # continue from the last checkpoint
    python -m training.train --set steps=200 --set name=smoke # any field can be overridden

The run's resolved config, checkpoints (every epoch, and when SIGTERM or Ctrl-C stops it: the step
finishes, a checkpoint is written, the exit status is 128 + the signal) and a JSON-lines log go to
``runs/<name>/``.
The same config trains on CPU or CUDA (bf16 autocast on either when ``bf16`` is set), in one process
or data-parallel on several under ``torchrun`` (``training.distributed`` states how):

    torchrun --nproc_per_node 8 -m training.train --config ...          # 8 GPUs, same command
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from models import create_model, metrics
from models.inputs import normalise
from training import distributed
from training.averaging import WeightAverage
from training.config import RESUME_OVERRIDABLE, TrainConfig, config_from_dict, load_config
from training.data import BatchSampler, augment, list_identity_folders, load_face_folder
from training.heads import create_head
from training.loop import RunLog, StopRequest, check_resume, cosine_lr, pick_device, save_atomic, save_config
from training.triplet import PKSampler, triplet_loss

log = logging.getLogger("training.train")


def lr_at(step: int, cfg: TrainConfig) -> float:
    return cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps)


def build(cfg: TrainConfig, num_classes: int, device: torch.device):
    """Backbone, head and optimiser for ``cfg``."""
    backbone = create_model(
        cfg.arch, embedding_dim=cfg.embedding_dim, input_size=cfg.input_size, dropout=cfg.dropout
    ).to(device)
    if cfg.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    # Triplet loss has no class centres; a plain head is still built so checkpoints keep one shape
    # (its centres get no gradient and are not used).
    head_loss, head_kwargs = ("softmax", {}) if cfg.loss == "triplet" else (cfg.loss, cfg.loss_kwargs)
    head = create_head(head_loss, cfg.embedding_dim, num_classes, **head_kwargs).to(device)
    # No weight decay on BN/PReLU parameters and biases: it only hurts them.
    decay = [p for p in backbone.parameters() if p.ndim > 1]
    no_decay = [p for p in backbone.parameters() if p.ndim <= 1]
    optimiser = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": cfg.weight_decay, "lr_mult": 1.0},
            {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
            {"params": head.parameters(), "weight_decay": cfg.weight_decay, "lr_mult": cfg.head_lr_mult},
        ],
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=True,
    )
    return backbone, head, optimiser


class Objective(torch.nn.Module):
    """Backbone and head as one module whose ``forward`` is the whole training loss, so that
    DistributedDataParallel sees every parameter used in it."""

    def __init__(self, backbone, head, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.cfg, self.device_type = cfg, device.type

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        """(mean loss over the batch, cosines to the class centres or ``None``, the share of
        satisfied triplets or ``None``)."""
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            emb = self.backbone(x)
        if self.cfg.loss == "triplet":
            # "accuracy" for triplets: the share of triplets already satisfied (loss 0).
            kwargs = self.cfg.loss_kwargs
            loss, active = triplet_loss(
                emb.float(), y, float(kwargs.get("margin", 0.2)), kwargs.get("mining", "semihard")
            )
            return loss, None, active
        # Accuracy is read from these cosines, before the step moves the centres towards this batch.
        cos = self.head.cosines(emb.float())
        return F.cross_entropy(self.head.logits(emb, y, cos), y), cos, None


def holdout_split(labels, fraction: float, seed: int):
    """Indices (train, held out): ``fraction`` of each identity's images, for identities with at least
    5 images, are held out to measure closed-set classification accuracy (the seed study's "test
    accuracy"); every identity keeps images in training."""
    rng = np.random.default_rng(seed + 1)
    held = []
    if fraction > 0:
        for label in np.unique(labels):
            idx = np.flatnonzero(labels == label)
            if len(idx) >= 5:
                held.extend(rng.choice(idx, size=max(1, int(fraction * len(idx))), replace=False))
    held = np.sort(np.array(held, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), held), held


@torch.no_grad()
def classification_accuracy(backbone, head, images, labels, cfg: TrainConfig, device, batch: int = 512) -> float:
    """Share of images whose nearest class centre (no margin) is their own identity."""
    backbone.eval()
    correct = 0
    for start in range(0, len(labels), batch):
        x = normalise(torch.from_numpy(images[start : start + batch])).to(device)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            emb = backbone(x)
        pred = head.cosines(emb.float()).argmax(1).cpu().numpy()
        correct += int((pred == labels[start : start + batch]).sum())
    backbone.train()
    return correct / len(labels)


def load_heldout(cfg: TrainConfig) -> tuple[dict[str, list[str]], np.ndarray] | None:
    """The held-out people's crops at the input size (``None`` when the run names none)."""
    from training.heldout import list_people

    root = cfg.resolved_heldout_dir()
    if root is None:
        raise ValueError("eval_every > 0 needs heldout_dir (training.celeba's heldout/ folder)")
    people = list_people(root)
    folders = [root / name for name in people]
    data = load_face_folder(folders, cfg.input_size, cfg.resolved_cache_dir())
    return people, data.images


@torch.no_grad()
def heldout_figures(
    backbone, heldout, cfg: TrainConfig, device, ema: WeightAverage | None = None, batch: int = 256
) -> dict:
    """TPR@FPR and DIR@FPIR on the held-out people, plain cosine, no flip (the averaged weights when
    averaging is on): the figures model selection and schedule choices read."""
    from training.heldout import idrate_metrics

    people, images = heldout
    live = None
    if ema is not None:
        live = {k: v.clone() for k, v in backbone.state_dict().items()}
        backbone.load_state_dict(ema.state["backbone"])
    backbone.eval()
    vectors = []
    for start in range(0, len(images), batch):
        x = normalise(torch.from_numpy(images[start : start + batch])).to(device)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            vectors.append(F.normalize(backbone(x).float(), dim=1).cpu().numpy())
    backbone.train()
    if live is not None:
        backbone.load_state_dict(live)
    names = [n for imgs in people.values() for n in imgs]
    result = idrate_metrics(dict(zip(names, np.concatenate(vectors))), people, metrics.cosine_matrix)
    return {
        **{f"tpr@{p['fpr']:g}": round(p["tpr"], 4) for p in result["idrate"]},
        **{f"dir@{p['fpr']:g}": round(p["tpr"], 4) for p in result["dir_at_fpir"]},
        **{f"dir_all_probes@{p['fpr']:g}": round(p["tpr"], 4) for p in result["dir_at_fpir_all_probes"]},
    }


def save_checkpoint(
    path: Path, step: int, backbone, head, optimiser, sampler, gen, ema: WeightAverage | None = None
) -> None:
    """Write atomically, so a run killed mid-write still resumes from the previous checkpoint.

    With weight averaging on, ``backbone`` and ``head`` hold the *averaged* weights (what export and
    evaluation read) and ``live`` the weights training continues from."""
    state = {
        "step": step,
        "backbone": backbone.state_dict(),
        "head": head.state_dict(),
        "optimiser": optimiser.state_dict(),
        "sampler_rng": sampler.rng.bit_generator.state,
        "torch_rng": gen.get_state(),
    }
    if ema is not None:
        state["live"] = {"backbone": state["backbone"], "head": state["head"], "updates": ema.updates}
        state["backbone"], state["head"] = ema.state["backbone"], ema.state["head"]
    save_atomic(path, state)


def train(cfg: TrainConfig, resume: bool) -> Path:
    """Run (or resume) training; returns the run directory.

    On resume the requested config must equal the run's saved one except in the fields
    :data:`RESUME_OVERRIDABLE` names (where and how fast it runs); any other difference -- a
    ``--set`` or an edited ``--config`` -- is refused with the list of fields, never silently ignored."""
    run = cfg.run_dir()
    ckpt_path = run / "checkpoint.pt"
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"--resume given but {ckpt_path} does not exist; drop --resume to start")
        saved = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
        check_resume(run, saved, cfg, RESUME_OVERRIDABLE)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    world, device_name = distributed.init(cfg.device, cfg.batch_size)
    device = pick_device(device_name)
    folders = list_identity_folders(cfg.resolved_data_dir(), cfg.identity_fraction, cfg.seed)
    data = load_face_folder(folders, cfg.input_size, cfg.resolved_cache_dir())
    train_idx, held_idx = holdout_split(data.labels, cfg.holdout, cfg.seed)
    images = torch.from_numpy(data.images[train_idx])
    labels = torch.from_numpy(data.labels[train_idx])
    log.info(
        "%d images of %d identities, device %s, process %d of %d",
        len(labels),
        data.num_classes,
        device,
        world.rank + 1,
        world.size,
    )

    backbone, head, optimiser = build(cfg, data.num_classes, device)
    triplet = cfg.loss == "triplet"
    objective = Objective(distributed.sync_batchnorm(backbone, world, device.type == "cuda"), head, cfg, device)
    if world.distributed:
        objective = torch.nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=triplet,  # the triplet loss leaves the head untouched
        )
    mine = world.shard(cfg.batch_size)
    if triplet:  # P identities x K images per batch; every (anchor, positive) pair gets a mined negative
        k = int(cfg.loss_kwargs.get("k", 4))
        sampler = PKSampler(data.labels[train_idx], cfg.batch_size // k, k, cfg.seed)
    else:
        sampler = BatchSampler(data.labels[train_idx], cfg.batch_size, cfg.balance_power, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    ema = WeightAverage({"backbone": backbone, "head": head}, cfg.ema_decay) if cfg.ema_decay else None
    start = 0
    if resume:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        live = state.get("live", state)
        backbone.load_state_dict(live["backbone"])
        head.load_state_dict(live["head"])
        if ema is not None:
            ema.restore({"backbone": state["backbone"], "head": state["head"]}, live["updates"])
        optimiser.load_state_dict(state["optimiser"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        gen.set_state(state["torch_rng"])
        start = state["step"]
        log.info("resumed %s at step %d", run, start)
    elif world.main:
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "classes.json", "w") as f:
            json.dump(data.class_names, f)
    if world.main:
        save_config(run, cfg)  # on resume: with the changes it allowed

    steps_per_epoch = max(1, len(labels) // cfg.batch_size)
    heldout = load_heldout(cfg) if cfg.eval_every > 0 and world.main else None
    backbone.train()
    head.train()
    log_file = RunLog(run) if world.main else None
    if log_file and resume and saved.steps != cfg.steps:
        # A longer (or shorter) schedule changes the learning rate from here on: the log keeps it, so
        # the card's reproduce command can say how the weights were made (training.export).
        log_file.write(
            {"step": start, "resumed_with": {"steps": cfg.steps}, "was": {"steps": saved.steps}, "time": time.time()}
        )
    bar = tqdm(
        range(start, cfg.steps), initial=start, total=cfg.steps, desc=cfg.name, unit="step", disable=not world.main
    )
    t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
    stopping = False
    with StopRequest() as stop:
        for step in bar:
            lr = lr_at(step, cfg)
            for group in optimiser.param_groups:
                group["lr"] = lr * group["lr_mult"]
            # Every rank draws and augments the whole global batch (same generators, same state) and
            # trains on its slice of it: together, exactly the batch one process would see.
            idx = torch.from_numpy(sampler.next())
            x = augment(normalise(images[idx]), cfg.augment, gen)[mine].to(device)
            y = labels[idx][mine].to(device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss, cos, active = objective(x, y)
            if not torch.isfinite(loss):  # before the step: the checkpoint keeps the last finite weights
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr (now {lr:.4g})")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(backbone.parameters(), 5.0)
            optimiser.step()
            if ema is not None:
                ema.update({"backbone": backbone, "head": head})
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (1.0 - active) * len(y) if triplet else (cos.detach().argmax(1) == y).sum().item()
            done = step + 1
            # One process stops at once; ranks agree at the next log line, so all stop at one step.
            stopping = bool(stop.signum) and not world.distributed
            if done % 20 == 0 or done == cfg.steps:
                seen, loss_sum, correct, asked = distributed.sum_over_ranks(
                    [seen, loss_sum, correct, float(stop.signum)], world
                )
                stopping = asked > 0
                ips = seen / (time.perf_counter() - t0)
                rec = {
                    "step": done,
                    "lr": lr,
                    "loss": loss_sum / seen,
                    "train_acc": correct / seen,
                    "img_per_s": ips,
                    "time": time.time(),
                }
                if log_file is not None:
                    log_file.write(rec)
                bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['train_acc']:.3f}", ips=f"{ips:.0f}")
                t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
            stopping = stopping and done < cfg.steps
            if (done % steps_per_epoch == 0 or done == cfg.steps or stopping) and world.main:
                save_checkpoint(ckpt_path, done, backbone, head, optimiser, sampler, gen, ema)
            if stopping:
                break
            if heldout is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
                rec = {
                    "step": done,
                    "heldout": heldout_figures(backbone, heldout, cfg, device, ema),
                    "time": time.time(),
                }
                log_file.write(rec)
                log.info("step %d, held-out people: %s", done, rec["heldout"])
    if log_file is not None:
        log_file.close()
    distributed.barrier(world)  # the last checkpoint is written before any rank leaves
    if stopping:
        distributed.finish(world)
        log.warning("stopped at step %d of %d by a signal; continue with --resume", done, cfg.steps)
        raise SystemExit(128 + (stop.signum or signal.SIGTERM))
    if not world.main:
        distributed.finish(world)
        return run
    if ema is not None:  # what is measured below and exported is the average
        backbone.load_state_dict(ema.state["backbone"])
        head.load_state_dict(ema.state["head"])
    if len(held_idx) and not triplet:  # no class centres, no closed-set classifier
        acc = classification_accuracy(backbone, head, data.images[held_idx], data.labels[held_idx], cfg, device)
        (run / "holdout.json").write_text(json.dumps({"images": int(len(held_idx)), "accuracy": acc}))
        log.info("held-out classification accuracy %.4f on %d images", acc, len(held_idx))
    log.info("finished %s: %d steps", run, cfg.steps)
    distributed.finish(world)
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of TrainConfig fields")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. --set steps=200 --set augment.flip=0",
    )
    parser.add_argument("--resume", action="store_true", help="continue runs/<name>/checkpoint.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train(load_config(args.config, args.set), args.resume)


if __name__ == "__main__":
    main()

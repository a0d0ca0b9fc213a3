"""Typed training configuration: defaults < YAML file < ``--set key=value`` overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from training.data import AugmentConfig


def data_root() -> Path:
    """The shared data root: ``FACEREC_DATA``, else ``../shared/data`` beside the project."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("FACEREC_DATA", default))


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.yaml`` next to its checkpoints."""

    name: str = "arcface_iresnet18_half_64"
    arch: str = "iresnet18_half"
    input_size: int = 64
    embedding_dim: int = 512
    dropout: float = 0.0
    loss: str = "arcface"
    loss_kwargs: dict = field(default_factory=lambda: {"s": 32.0, "m": 0.5})
    data_dir: str = ""  # empty: <FACEREC_DATA>/recognition/train
    # Which points aligned the training crops (recorded in the model card): "mtcnn5" for the shared
    # crops, "landmarks68" for crops re-aligned by ``training.realign`` with our 68-point network.
    alignment: str = "mtcnn5"
    identity_fraction: float = 1.0
    holdout: float = 0.0  # share of images per identity held out for closed-set classification accuracy
    # Held-out *people* (training.splits, built by training.celeba into heldout/): with eval_every > 0
    # the run measures TPR@FPR and DIR@FPIR on them every eval_every steps and at the end (log.jsonl,
    # heldout.json) -- what model selection and schedule choices are made on, never LFW.
    heldout_dir: str = ""
    eval_every: int = 0
    balance_power: float = 0.5
    batch_size: int = 128
    steps: int = 10000
    lr: float = 0.1
    head_lr_mult: float = 1.0
    # > 0: keep an exponential moving average of the weights (training.averaging) and export that;
    # its horizon is 1 / (1 - ema_decay) steps (0.998: the last ~500).
    ema_decay: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 300
    bf16: bool = True
    channels_last: bool = True
    threads: int = 0  # 0: torch's default
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs"
    cache_dir: str = ""  # empty: ~/.cache/facerec
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else data_root() / "recognition" / "train"

    def resolved_heldout_dir(self) -> Path | None:
        return Path(self.heldout_dir).expanduser() if self.heldout_dir else None

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else Path.home() / ".cache" / "facerec"

    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: str, current):
    """Parse a ``--set`` string with YAML, then check it against the current value's type."""
    parsed = yaml.safe_load(value)
    if isinstance(current, float) and isinstance(parsed, int):
        parsed = float(parsed)
    if isinstance(current, tuple) and isinstance(parsed, list):
        parsed = tuple(parsed)
    if current is not None and not isinstance(parsed, type(current)):
        raise ValueError(f"{value!r} is not a {type(current).__name__}")
    return parsed


def apply_overrides(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """Return ``cfg`` with ``{"a.b": value}`` overrides applied; unknown keys are an error."""
    for key, value in overrides.items():
        path = key.split(".")
        obj = cfg
        for part in path[:-1]:
            obj = getattr(obj, part)
        leaf = path[-1]
        if not hasattr(obj, leaf):
            valid = [f.name for f in dataclasses.fields(obj)]
            raise KeyError(f"unknown config key {key!r}; valid keys here: {valid}")
        current = getattr(obj, leaf)
        if isinstance(value, str) and not isinstance(current, str):
            value = _coerce(value, current)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):  # field by field: typed, checked
            value = apply_overrides(dataclasses.replace(current), value)
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        setattr(obj, leaf, value)
    return cfg


def load_config(path: str | None, sets: list[str], config=None):
    """Build a config from defaults, an optional YAML file and ``key=value`` strings.

    ``config`` is the defaults object to fill (any config dataclass; a ``TrainConfig`` when omitted)."""
    cfg = TrainConfig() if config is None else config
    if path:
        with open(path) as f:
            apply_overrides(cfg, yaml.safe_load(f) or {})
    pairs = {}
    for item in sets:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        pairs[key] = value
    return apply_overrides(cfg, pairs)


#: What ``--resume`` may change in a saved run: where and how fast it runs, and ``steps`` (a longer
#: run: the cosine schedule is stretched from the step it resumes at). Nothing else it learns from.
RESUME_OVERRIDABLE = {"threads", "device", "cache_dir", "out_dir", "eval_every", "steps"}


def config_from_dict(data: dict) -> TrainConfig:
    """Rebuild a config saved with a run."""
    return apply_overrides(TrainConfig(), data)

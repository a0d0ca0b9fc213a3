"""The scaffold every training loop here shares: device choice, the learning-rate schedule, the
resume check, atomic checkpoints, the JSON-lines log and stopping on a signal (``training.train`` for
embedders, ``training.train_landmarks`` for the 68-point network)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import threading
from pathlib import Path

import torch
import yaml

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def cosine_lr(step: int, lr: float, warmup_steps: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to zero, tied to steps (not wall-clock)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * lr * (1 + math.cos(math.pi * min(1.0, progress)))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "loss_kwargs" else {prefix + k: v})
    return out


def config_changes(saved, requested) -> list[str]:
    """Fields (dotted) whose value differs between two config dataclasses (tuples equal lists)."""
    plain = lambda c: _flat(json.loads(json.dumps(dataclasses.asdict(c))))  # noqa: E731
    a, b = plain(saved), plain(requested)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def check_resume(run: Path, saved, requested, overridable: set[str]) -> None:
    """Refuse to resume ``run`` with a config that differs from its saved one in anything but
    ``overridable`` fields: a change that would be ignored is an error, never silent."""
    refused = [k for k in config_changes(saved, requested) if k.split(".")[0] not in overridable]
    if refused:
        raise ValueError(
            f"--resume continues {run} with its saved config, but the requested one differs in "
            f"{refused}; only {sorted(overridable)} may change on resume. Drop those changes, "
            "or start a new run under another name."
        )


def save_config(run: Path, cfg) -> None:
    (run / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))


def save_atomic(path: Path, state: dict) -> None:
    """Write a checkpoint so that a run killed mid-write still resumes from the previous one."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


class RunLog:
    """Appends one JSON object per line to ``run/log.jsonl``, flushed at once (a killed run keeps its log)."""

    def __init__(self, run: Path) -> None:
        self.file = open(run / "log.jsonl", "a")  # noqa: SIM115  (closed by close() / the context manager)

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StopRequest:
    """While entered, SIGTERM or Ctrl-C (SIGINT) asks the training loop to stop after the current step
    -- write a checkpoint and exit 128 + the signal's number -- instead of losing everything since the
    last one (an epoch is ~15 minutes of a CelebA run on two cores). A second signal stops at once.
    Handlers can only be set from the main thread; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.signum:
            raise KeyboardInterrupt(f"second signal {signum}: stopping without a checkpoint")
        self.signum = signum
        log.warning("signal %d: stopping after this step with a checkpoint (again to stop at once)", signum)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

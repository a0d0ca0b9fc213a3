"""The face embedder: aligned 112x112 crops in, L2-normalised embeddings out (numpy both ways)."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.inputs import hwc_batch, resize_crop
from models.registry import create_model
from models.runtime import Export, OneNetwork, OrtNet, TorchNet, device_kind
from models.scoring import ScoreFunction, cohort_normalised, cosine_matrix

if TYPE_CHECKING:
    import torch
    from torch import nn


log = logging.getLogger(__name__)


@dataclass
class ModelCard:
    """The JSON card committed beside a weight file (only the fields inference needs are typed)."""

    name: str
    version: str
    architecture: str
    arch_kwargs: dict
    input_size: int
    embedding_dim: int
    flip_tta: bool
    raw: dict

    @classmethod
    def load(cls, path: Path) -> "ModelCard":
        with open(path) as f:
            raw = json.load(f)
        missing = {"name", "version", "architecture", "input_size", "embedding_dim"} - raw.keys()
        if missing:
            raise ValueError(f"model card {path} lacks {sorted(missing)}; re-export it with training.export")
        return cls(
            raw["name"],
            raw["version"],
            raw["architecture"],
            raw.get("arch_kwargs", {}),
            raw["input_size"],
            raw["embedding_dim"],
            bool(raw.get("flip_tta", False)),
            raw,
        )

    @property
    def scoring(self) -> dict:
        """How two embeddings are compared (``{"method": "cosine"}`` for cards older than scoring)."""
        return self.raw.get("scoring") or {"method": "cosine"}

    def thresholds(self) -> dict[float, float]:
        """Calibrated similarity thresholds by false-positive rate (from the card's ID-rate negatives)."""
        table = self.raw.get("thresholds", {})
        return {float(fpr): float(t) for fpr, t in table.items()}


def read_vouched(path: Path, sha256: str, what: str, remedy: str) -> bytes:
    """The bytes of a file a model card names beside the weights, checked against the SHA-256 it
    records: a file from another export must not be served with this card's thresholds."""
    if not path.exists():
        raise FileNotFoundError(f"{path} ({what}) is missing; {remedy}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path} ({what}) does not match the SHA-256 its card records; {remedy}")
    return data


def load_score_function(weights: Path, card: ModelCard) -> ScoreFunction:
    """The score the card's thresholds were calibrated on: plain cosine, or cosine normalised by the
    cohort file named in the card's ``scoring`` (checked against its SHA-256)."""
    scoring = card.scoring
    method = scoring.get("method")
    if method == "cosine":
        return cosine_matrix
    if method != "cohort":
        raise ValueError(
            f"model card of {weights} names scoring method {method!r}; "
            "known: 'cosine', 'cohort' (re-export it with training.export)"
        )
    path = weights.parent / scoring["cohort_file"]
    data = read_vouched(
        path,
        scoring["cohort_sha256"],
        f"the cohort the card of {weights.name} scores with",
        "re-export the weights and the cohort together with training.export --cohort-top-k",
    )
    cohort = np.load(io.BytesIO(data)).astype(np.float32)
    if cohort.ndim != 2 or cohort.shape[1] != card.embedding_dim:
        raise ValueError(f"{path} holds an array of shape {cohort.shape}; expected (n, {card.embedding_dim})")
    return cohort_normalised(cohort, int(scoring["top_k"]))


def load_backbone(weights: Path, card: ModelCard) -> nn.Module:
    """Build the card's architecture and load the (fp16-stored) weights as fp32, in eval mode."""
    import torch

    model = create_model(
        card.architecture, embedding_dim=card.embedding_dim, input_size=card.input_size, **card.arch_kwargs
    )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def l2_normalised(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its length (rows shorter than 1e-12 by 1e-12, as PyTorch's ``F.normalize``)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.float32(1e-12))


class Embedder(OneNetwork):
    """Runs the backbone on aligned crops.

    Args:
        weights: the ``.pt`` state dict; its card is the ``.json`` beside it.
        device: where the network runs (a device name or a ``torch.device``).
        bf16: run PyTorch under bfloat16 autocast. Default: on a GPU (where it is fast and, as tested on
            real faces, keeps every embedding within cosine 0.999 of fp32), off on a CPU (where the
            service runs OpenVINO, in bf16 where the CPU computes it natively: ``models.runtime``).

    The network runs with PyTorch unless :meth:`use_onnxruntime` is called; the PyTorch module is
    loaded at its first use, so an embedder on cached ONNX networks never imports PyTorch.
    """

    def __init__(self, weights: Path, device: torch.device | str = "cpu", bf16: bool | None = None) -> None:
        self.weights = weights = Path(weights)
        self.card = ModelCard.load(weights.with_suffix(".json"))
        self.device = str(device)
        self.bf16 = device_kind(self.device) == "cuda" if bf16 is None else bf16
        self.dim = self.card.embedding_dim
        self.version = self.card.version
        #: How two of this embedder's vectors are compared (the scale of the card's thresholds).
        self.score: ScoreFunction = load_score_function(weights, self.card)

    @functools.cached_property
    def model(self) -> nn.Module:
        """The backbone as a PyTorch module on the embedder's device (loaded at first use)."""
        import torch

        return load_backbone(self.weights, self.card).to(self.device, memory_format=torch.channels_last)

    def torch_net(self) -> TorchNet:
        """Channels-last (faster on a CPU), bf16 if asked."""
        return TorchNet(self.model, self.device, channels_last=True, bf16=self.bf16)

    def export(self) -> Export:
        """How the network is exported for ONNX Runtime (a batch of any size)."""
        size = self.card.input_size
        # The card's fields that build the network (not its metrics, which change without it).
        build = {k: self.card.raw.get(k) for k in ("architecture", "arch_kwargs", "input_size", "embedding_dim")}
        sources = [self.weights, json.dumps(build, sort_keys=True).encode()]
        return Export("embedder", lambda: self.model, (2, 3, size, size), {0: "n"}, sources)

    def use_onnxruntime(self, cache_dir: Path | None = None, threads: int | None = None, int8: bool = False) -> None:
        """Run the network on ONNX Runtime (``models.runtime``); with ``int8``, the quantized network
        the card names (``training.quantize``). Its vectors differ a little from fp32's, so the
        version gets ``-int8``: vectors of the two are never compared (enrolled faces are re-enrolled)."""
        if not int8:
            super().use_onnxruntime(cache_dir, threads)
            return
        entry = self.card.raw.get("int8")
        if not entry:
            raise ValueError(
                f"the card of {self.weights} names no int8 network: make one with python -m training.quantize "
                "--weights ... --data ..., or leave FACEREC_EMBEDDER_INT8 off"
            )
        model = read_vouched(
            self.weights.parent / entry["file"],
            entry["sha256"],
            f"the int8 network the card of {self.weights.name} names",
            "make it again with python -m training.quantize",
        )
        self._runner = OrtNet(model, threads)
        self._runner.precision = "int8"
        self.version = f"{self.card.version}-int8"

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """112x112 RGB uint8 crops -> the normalised float32 batch at the network's input size."""
        return hwc_batch([resize_crop(c, self.card.input_size) for c in crops])

    def embed(self, crops: list[np.ndarray], normalize: bool = True) -> np.ndarray:
        """``(len(crops), dim)`` float32 unit vectors; ``(0, dim)`` for no crops.

        ``normalize=False`` returns the raw network outputs, whose norms the embedding study reads
        as a quality signal; the service always compares unit vectors.
        """
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        emb = self._forward(self.preprocess(crops))
        return l2_normalised(emb) if normalize else emb

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self.card.flip_tta:
            # One forward pass over the crops and their mirror images: on a CPU a batch of 2n costs far
            # less than two batches of n (measured 18 -> 7 ms for one face).
            both = self.runner(np.concatenate([x, x[..., ::-1]]))
            return both[: len(x)] + both[len(x) :]
        return self.runner(x)

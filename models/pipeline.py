"""The full pipeline: detect -> align -> embed, each step usable on its own, and the one factory
that builds it.

What is measured is what is served: the service (``app.main``), the LFW evaluation
(``training.evaluate``), the alignment tools and the benchmarks all build their pipeline with
:func:`build_pipeline` from a :class:`PipelineConfig`, whose defaults *are* the service's defaults
(``app.config.Settings`` reads them from here). A tool that measures something else must say so
by passing a different config, and ``training.evaluate --update-card`` refuses to.

The networks' PyTorch modules (and PyTorch with them) are loaded only where they run or are
exported: a service on ONNX Runtime whose exported networks are cached never imports PyTorch
(``models.runtime``), and the service imports its settings from here without it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from models import DEFAULT_LANDMARK_WEIGHTS, DEFAULT_WEIGHTS, runtime
from models.landmarks import five_from_68
from models.runtime import Export, Runtime
from models.timing import Timings
from models.types import Detection, Face

if TYPE_CHECKING:
    import torch

    from models.aligner import FivePointAligner
    from models.detector import MTCNNDetector
    from models.embedder import Embedder
    from models.landmarker import Landmarker


class FacePipeline:
    """One RGB image in, ``list[Face]`` out (``[]`` when no face is found).

    With a ``landmarker``, each face's 68 points are predicted from its detector box and the five
    alignment points derived from them (eye centres, nose tip, mouth corners); without one, the
    detector's own five points are used."""

    def __init__(
        self,
        detector: MTCNNDetector,
        aligner: FivePointAligner,
        embedder: Embedder,
        landmarker: Landmarker | None = None,
    ) -> None:
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.landmarker = landmarker
        self.runtime = "torch"  # where the networks run: build_pipeline sets it (models.runtime)

    @property
    def version(self) -> str:
        """What enrolled vectors are tagged with: the embedder, plus the landmark network when it
        aligns (other crops give other vectors, which must not be mixed in one gallery)."""
        return self.embedder.version + (f"+{self.landmarker.version}" if self.landmarker else "")

    @property
    def precision(self) -> str:
        """``bf16`` when any of its networks computes in bf16 (OpenVINO on a CPU with native bf16, or
        PyTorch on a GPU), else ``fp32``: the vectors are the same model version either way, but caches
        of measured outputs are kept apart by it (``training.evaluate``)."""
        networks = [self.detector.mtcnn, self.embedder] + ([self.landmarker] if self.landmarker else [])
        return "bf16" if any(n.precision == "bf16" for n in networks) else "fp32"

    def detect(
        self, image: np.ndarray, timings: Timings | None = None, min_face_size: int | None = None
    ) -> list[Detection]:
        timings = Timings() if timings is None else timings
        with timings.stage("detect"):
            return self.detector.detect(image, min_face_size)

    def alignment_points(
        self, image: np.ndarray, detections: list[Detection]
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """The five points each face is aligned with, and its 68 points (``None`` without a landmarker)."""
        if self.landmarker is None or not detections:
            return [d.points for d in detections], [None] * len(detections)
        dense = list(self.landmarker.predict(image, [d.box for d in detections]))
        return [five_from_68(p) for p in dense], dense

    def embed_detections(
        self, image: np.ndarray, detections: list[Detection], timings: Timings | None = None
    ) -> list[Face]:
        """Align every detection and embed them as one batch."""
        timings = Timings() if timings is None else timings
        with timings.stage("landmarks") if self.landmarker is not None else nullcontext():
            five, dense = self.alignment_points(image, detections)
        with timings.stage("align"):
            crops = [self.aligner.align(image, p) for p in five]
        with timings.stage("embed"):
            vectors = self.embedder.embed(crops)
        return [
            Face(d.box, d.score, p, v, dense_points) for d, p, v, dense_points in zip(detections, five, vectors, dense)
        ]

    def faces(self, image: np.ndarray, max_faces: int | None = None) -> list[Face]:
        """Detect, align and embed every face (the ``max_faces`` highest-scoring when capped)."""
        detections = self.detect(image)
        return self.embed_detections(image, detections[:max_faces] if max_faces else detections)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that decides which faces are found and which vectors they get.

    Args:
        weights: the embedder (its card says input size, flip TTA and scoring).
        detector_min_score: faces the detector scores lower are ignored.
        detector_min_face: the smallest face side (px) the detector looks for (MTCNN's pyramid).
        detector_pyramid_factor: the ratio between MTCNN's pyramid levels (``bench/detector_profile.py``).
        detector_pnet_threshold: the score MTCNN's first stage needs to hand a window on to the next
            two (``bench/detector_profile.py``).
        aligner: ``mtcnn5`` (the detector's five points) or ``landmarks68`` (our 68-point network).
        landmark_weights: the 68-point network, used when ``aligner`` is ``landmarks68``.
        runtime: where the networks run (``models.runtime``): ``auto`` is PyTorch on a GPU and
            OpenVINO on a CPU (in bf16 where the CPU computes it natively, else fp32). fp32 outputs
            agree with PyTorch's within 1e-4, bf16's vectors within cosine 0.9999 of fp32's (as on a
            GPU), so the runtime changes speed, not the model version.
        embedder_int8: run the card's int8 embedder (``training.quantize``; ONNX Runtime only). It
            changes the vectors a little, so it is a model version of its own.
    """

    weights: Path = DEFAULT_WEIGHTS
    detector_min_score: float = 0.9
    detector_min_face: int = 40
    detector_pyramid_factor: float = 0.6
    detector_pnet_threshold: float = 0.7
    aligner: Literal["mtcnn5", "landmarks68"] = "mtcnn5"
    landmark_weights: Path = DEFAULT_LANDMARK_WEIGHTS
    runtime: Runtime = "auto"
    embedder_int8: bool = False

    def differences(self, other: "PipelineConfig") -> list[str]:
        """Names of the fields where ``other`` differs (paths compared resolved)."""
        norm = lambda v: Path(v).resolve() if isinstance(v, Path) else v  # noqa: E731
        return [f for f in self.__dataclass_fields__ if norm(getattr(self, f)) != norm(getattr(other, f))]


def build_detector(config: PipelineConfig, device: torch.device | str = "cpu") -> MTCNNDetector:
    from models.detector import MTCNNDetector

    return MTCNNDetector(
        device,
        min_score=config.detector_min_score,
        min_face_size=config.detector_min_face,
        factor=config.detector_pyramid_factor,
        pnet_threshold=config.detector_pnet_threshold,
    )


def build_pipeline(
    config: PipelineConfig | None = None, device: torch.device | str = "cpu", cache_dir: Path | None = None
) -> FacePipeline:
    """The pipeline ``config`` describes (the service's defaults when omitted), loaded on ``device``;
    with ONNX Runtime, the exported networks are kept in ``cache_dir`` when one is given (and when
    all of them are there, PyTorch is not imported at all)."""
    from models.aligner import FivePointAligner
    from models.embedder import Embedder
    from models.landmarker import Landmarker

    config = config or PipelineConfig()
    if config.aligner not in ("mtcnn5", "landmarks68"):
        raise ValueError(f"unknown aligner {config.aligner!r}; use 'mtcnn5' or 'landmarks68'")
    device = str(device)
    where = runtime.resolve(config.runtime, device)
    if config.embedder_int8 and where not in runtime.EXPORTED:
        raise ValueError(
            f"the int8 embedder runs on ONNX Runtime on a CPU; runtime {config.runtime!r} on {device} "
            "would ignore it: turn FACEREC_EMBEDDER_INT8 off or use a CPU runtime"
        )
    landmarker = Landmarker(config.landmark_weights, device) if config.aligner == "landmarks68" else None
    pipeline = FacePipeline(
        build_detector(config, device), FivePointAligner(), Embedder(config.weights, device), landmarker
    )
    networks = [pipeline.detector.mtcnn, pipeline.embedder] + ([landmarker] if landmarker is not None else [])
    if where in runtime.EXPORTED:
        pipeline.runtime = where
        pipeline.detector.mtcnn.use_exported(where, cache_dir)
        if config.embedder_int8:  # a network of its own, quantized for ONNX Runtime
            pipeline.embedder.use_onnxruntime(cache_dir, int8=True)
        else:
            pipeline.embedder.use_exported(where, cache_dir)
        if landmarker is not None:
            landmarker.use_exported(where, cache_dir)
    else:
        for network in networks:  # loaded now, not at the first photo
            network.use_torch()
    return pipeline


def onnx_exports(config: PipelineConfig) -> list[Export]:
    """How each network of the pipeline is exported for ONNX Runtime and OpenVINO (``models.runtime``)."""
    pipeline = build_pipeline(PipelineConfig(**{**config.__dict__, "runtime": "torch", "embedder_int8": False}))
    exports = [*pipeline.detector.mtcnn.exports(), pipeline.embedder.export()]
    return exports + ([pipeline.landmarker.export()] if pipeline.landmarker is not None else [])

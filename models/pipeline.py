"""The full pipeline: detect -> align -> embed, each step usable on its own."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from models.aligner import FivePointAligner
from models.detector import MTCNNDetector
from models.embedder import Embedder
from models.landmarker import Landmarker
from models.landmarks import five_from_68
from models.timing import Timings
from models.types import Detection, Face


class FacePipeline:
    """One RGB image in, ``list[Face]`` out (``[]`` when no face is found).

    With a ``landmarker``, each face's 68 points are predicted from its detector box and the five
    alignment points derived from them (eye centres, nose tip, mouth corners); without one, the
    detector's own five points are used."""

    def __init__(self, detector: MTCNNDetector, aligner: FivePointAligner, embedder: Embedder,
                 landmarker: Landmarker | None = None) -> None:
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.landmarker = landmarker

    @property
    def version(self) -> str:
        """What enrolled vectors are tagged with: the embedder, plus the landmark network when it
        aligns (other crops give other vectors, which must not be mixed in one gallery)."""
        return self.embedder.version + (f"+{self.landmarker.version}" if self.landmarker else "")

    def detect(self, image: np.ndarray, timings: Timings | None = None,
               min_face_size: int | None = None) -> list[Detection]:
        timings = Timings() if timings is None else timings
        with timings.stage("detect"):
            return self.detector.detect(image, min_face_size)

    def alignment_points(self, image: np.ndarray,
                         detections: list[Detection]) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """The five points each face is aligned with, and its 68 points (``None`` without a landmarker)."""
        if self.landmarker is None or not detections:
            return [d.points for d in detections], [None] * len(detections)
        dense = list(self.landmarker.predict(image, [d.box for d in detections]))
        return [five_from_68(p) for p in dense], dense

    def embed_detections(self, image: np.ndarray, detections: list[Detection],
                         timings: Timings | None = None) -> list[Face]:
        """Align every detection and embed them as one batch."""
        timings = Timings() if timings is None else timings
        with timings.stage("landmarks") if self.landmarker is not None else nullcontext():
            five, dense = self.alignment_points(image, detections)
        with timings.stage("align"):
            crops = [self.aligner.align(image, p) for p in five]
        with timings.stage("embed"):
            vectors = self.embedder.embed(crops)
        return [Face(d.box, d.score, p, v, dense_points) for d, p, v, dense_points in zip(detections, five, vectors, dense)]

    def faces(self, image: np.ndarray, max_faces: int | None = None) -> list[Face]:
        """Detect, align and embed every face (the ``max_faces`` highest-scoring when capped)."""
        detections = self.detect(image)
        return self.embed_detections(image, detections[:max_faces] if max_faces else detections)

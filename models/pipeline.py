"""The full pipeline: detect -> align -> embed, each step usable on its own."""
from __future__ import annotations

import numpy as np

from models.aligner import FivePointAligner
from models.detector import MTCNNDetector
from models.embedder import Embedder
from models.timing import Timings
from models.types import Detection, Face


class FacePipeline:
    """One RGB image in, ``list[Face]`` out (``[]`` when no face is found)."""

    def __init__(self, detector: MTCNNDetector, aligner: FivePointAligner, embedder: Embedder) -> None:
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder

    def detect(self, image: np.ndarray, timings: Timings | None = None) -> list[Detection]:
        timings = Timings() if timings is None else timings
        with timings.stage("detect"):
            return self.detector.detect(image)

    def embed_detections(self, image: np.ndarray, detections: list[Detection],
                         timings: Timings | None = None) -> list[Face]:
        """Align every detection and embed them as one batch."""
        timings = Timings() if timings is None else timings
        with timings.stage("align"):
            crops = [self.aligner.align(image, d.points) for d in detections]
        with timings.stage("embed"):
            vectors = self.embedder.embed(crops)
        return [Face(d.box, d.score, d.points, v) for d, v in zip(detections, vectors)]

    def faces(self, image: np.ndarray, max_faces: int | None = None) -> list[Face]:
        """Detect, align and embed every face (the ``max_faces`` highest-scoring when capped)."""
        detections = self.detect(image)
        return self.embed_detections(image, detections[:max_faces] if max_faces else detections)

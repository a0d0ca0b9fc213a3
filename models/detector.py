"""Face detection behind our own interface: RGB image in, ``list[Detection]`` out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from models.mtcnn import MTCNN
from models.types import Detection

if TYPE_CHECKING:
    import torch


class MTCNNDetector:
    """MTCNN (our cascade in ``models/mtcnn.py``; its weights ship inside the facenet-pytorch wheel,
    nothing is downloaded).

    Args:
        device: where the three cascaded nets run (a device name or a ``torch.device``).
        min_score: faces scored below this are dropped (MTCNN's own last-stage threshold is 0.7,
            which lets through textured background patches in group photos).
        min_face_size: smallest face side, in pixels of the (possibly downscaled) image.
        factor: the ratio between the pyramid levels MTCNN searches (the published 0.709 = 1/sqrt(2)).
        max_side: in larger photos, faces are searched for at the sizes they would have in the photo
            downscaled to this side, which bounds detection time without changing what is found at
            normal sizes.
        pnet_threshold: the first stage's score for a window to become a candidate for the next two
            (the published 0.6); a higher one hands R-Net and O-Net fewer candidates.
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        min_score: float = 0.9,
        min_face_size: int = 20,
        max_side: int = 1280,
        factor: float = 0.709,
        pnet_threshold: float = 0.6,
    ) -> None:
        thresholds = (pnet_threshold, *MTCNN.PUBLISHED_THRESHOLDS[1:])
        self.mtcnn = MTCNN(device=device, min_face_size=min_face_size, thresholds=thresholds, factor=factor)
        self.min_score = min_score
        self.max_side = max_side

    @property
    def key(self) -> str:
        """Names the cascade and its settings: caches of detections are keyed by it (with what P-, R- and
        O-Net compute in when one of them computes in bf16, e.g. ``|fp32/bf16/bf16``: boxes differ from
        fp32's by a fraction of a pixel)."""
        m = self.mtcnn
        precision = "|" + "/".join(m.precisions) if m.precision == "bf16" else ""
        return f"{MTCNN.version}|{self.min_score}|{m.min_face_size}|{self.max_side}|{m.factor}|{m.thresholds[0]}{precision}"

    def detect(self, image: np.ndarray, min_face_size: int | None = None) -> list[Detection]:
        """Every face in an RGB uint8 ``(H, W, 3)`` image, highest score first.

        ``min_face_size`` (pixels of the possibly downscaled image) overrides the detector's for this
        call and is then a hard floor: MTCNN's box regression also finds some faces a little below
        the size it searches for, and those are dropped (the detector's own size is only a search
        size, so such finds are kept)."""
        scale = min(1.0, self.max_side / max(image.shape[:2]))
        search = self.mtcnn.min_face_size if min_face_size is None else min_face_size
        # The faces searched for are those of the photo downscaled to max_side, but no downscaled copy
        # is made: the cascade reads its pyramid and crops from halvings of the photo itself, and the
        # copy cost more than the rest of the cascade's resampling (2000x1428: 24 ms, contended).
        boxes, scores, points = self.mtcnn.detect(image, search / scale)
        faces = [
            Detection(np.asarray(b, np.float32), float(s), np.asarray(p, np.float32))
            for b, s, p in zip(boxes, scores, points)
            if s >= self.min_score and (min_face_size is None or max(b[2] - b[0], b[3] - b[1]) * scale >= min_face_size)
        ]
        return sorted(faces, key=lambda f: -f.score)

"""Detection recall on dlib's hand-marked crowd photos (``<FACEREC_DATA>/photos/crowds``): the check
``tests/test_detector.py`` makes and ``bench/detector_profile.py`` sweeps settings against."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: A marked face counts as found when a detection overlaps it by at least this IoU.
FOUND_IOU = 0.3


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def marked_faces(crowds: Path) -> dict[str, list[list[float]]]:
    """Each photo's hand-marked face boxes ``(x1, y1, x2, y2)``, from dlib's training and testing XML."""
    marked = {}
    for xml in ("training.xml", "testing.xml"):
        for image in ET.parse(crowds / xml).getroot().iter("image"):
            marked[image.get("file")] = [
                [
                    float(b.get("left")),
                    float(b.get("top")),
                    float(b.get("left")) + float(b.get("width")),
                    float(b.get("top")) + float(b.get("height")),
                ]
                for b in image.iter("box")
            ]
    return marked


def crowd_recall(detector, crowds: Path, load: Callable[[Path], np.ndarray]) -> dict:
    """Marked faces found by ``detector`` (``detect(rgb) -> [Detection]``) on the photos ``load``
    decodes, and its detections that match no marked face."""
    found = total = extra = 0
    for name, boxes in marked_faces(crowds).items():
        dets = [d.box.tolist() for d in detector.detect(load(crowds / name))]
        found += sum(any(box_iou(m, d) >= FOUND_IOU for d in dets) for m in boxes)
        total += len(boxes)
        extra += sum(not any(box_iou(m, d) >= FOUND_IOU for m in boxes) for d in dets)
    return {"found": found, "marked": total, "unmatched_detections": extra}

"""Our MTCNN cascade (Zhang et al. 2016) over the P/R/O-Net weights that ship in the facenet-pytorch wheel.

Why our own: facenet-pytorch's cascade resamples the full float image once per pyramid scale and each
candidate box separately with adaptive average pooling, which took about half of all detection time
here, and importing the package pulls in torchvision (most of the service's start-up imports). This
module builds the pyramid with OpenCV on uint8 pixels, crops candidates with zero padding (as the
original MTCNN does) and runs each refinement stage as one batch. Since ``facerec-mtcnn-2`` both the
pyramid levels and the candidate crops are read from halvings of the photo (:func:`halvings`), so that
no area resampling reads more than four times the pixels it writes: on the 640x480 benchmark photo the
cascade's work outside the three networks fell from 12.6 to 3.8 ms (``bench/detector_profile.py``).
Only the three weight files are read from the wheel (``facenet_pytorch/data/{p,r,o}net.pt``); the
package itself is never imported. The three networks are defined in ``models.mtcnn_nets``; this module
works in numpy and calls them through runners (``models.runtime``), so it does not import PyTorch.

Boxes are ``(x1, y1, x2, y2)`` in pixel-edge coordinates (a box covering pixels 0..9 is 0..10) and the
five points are pixel coordinates, in the order left eye, right eye, nose, left and right mouth corner.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from models.runtime import Export, TorchNet, onnx_net

if TYPE_CHECKING:
    import torch

    from models.mtcnn_nets import ONet, PNet, RNet


def wheel_weights_dir() -> Path:
    """Where facenet-pytorch keeps the three MTCNN weight files, found without importing it."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the MTCNN weights ship in the facenet-pytorch wheel; install facenet-pytorch==2.5.3 "
            "(it is a dependency in pyproject.toml)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best first (ties in the order given). ``mode="min"``
    divides the overlap by the smaller box (MTCNN's last stage uses it to drop boxes nested inside a face).

    The overlaps of all pairs are computed at once and the greedy pass only reads them: the same
    decisions as :func:`nms_loop` (one array pass per kept box), for 30 boxes 0.81 -> 0.12 ms and for
    150 7.4 -> 0.65 ms (random boxes, this machine; the cascade runs it once per pyramid level and
    twice more). Above ``_PAIRWISE_MAX`` boxes the pairs would take too much memory and the loop runs."""
    if len(boxes) > _PAIRWISE_MAX:
        return nms_loop(boxes, scores, threshold, mode)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[order].T
    area = (x2 - x1) * (y2 - y1)
    w = np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None)
    h = np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None)
    inter = w * h
    denom = np.minimum(area[:, None], area) if mode == "min" else area[:, None] + area - inter
    overlaps = inter / np.maximum(denom, 1e-9) > threshold
    keep, gone = [], np.zeros(len(order), bool)
    for i in range(len(order)):
        if not gone[i]:
            keep.append(i)
            gone |= overlaps[i]
    return order[keep].astype(np.int64)


_PAIRWISE_MAX = 1000  # 1000 x 1000 pairs: ~4 MB per array


def nms_loop(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """:func:`nms` with one pass over the remaining boxes per kept box (little memory for many boxes)."""
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1) * (y2 - y1)
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / np.maximum(denom, 1e-9) <= threshold]
    return np.asarray(keep, np.int64)


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each box's edges by its regression offsets (fractions of its width and height)."""
    size = np.concatenate([boxes[:, 2:4] - boxes[:, 0:2]] * 2, axis=1)
    return boxes + offsets * size


def square(boxes: np.ndarray) -> np.ndarray:
    """The square of side max(w, h) around each box's centre (the next stage's input is square)."""
    centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    half = (boxes[:, 2:4] - boxes[:, 0:2]).max(1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def halvings(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``image`` and up to ``levels`` successive halvings (each the mean of 2 x 2 pixel blocks, an odd
    last row or column dropped), while the half is at least 12 px a side (a 640x480 photo's five cost
    ~0.3 ms: the cascade makes them once and reads its pyramid levels and its crops from them)."""
    out = [image]
    for _ in range(levels):
        h, w = out[-1].shape[:2]
        if min(h, w) < 24:
            break
        out.append(cv2.resize(out[-1][: h // 2 * 2, : w // 2 * 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    return out


def crops(halves: list[np.ndarray], boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` x ``size`` crops of the boxes in the photo ``halves[0]``, zero outside it, read from its
    :func:`halvings`; (n, size, size, 3), and the boxes they show.

    A box is rounded to whole pixels; one at least twice ``size`` is read from the smallest halving
    where it still spans ``size`` pixels, with its corners rounded to that halving's pixel grid; the
    boxes returned are those rounded boxes (in ``halves[0]``'s pixels), so what the next stage is told it saw is what it saw.
    Area resampling costs in proportion to the pixels read: R-Net's crops on the 640x480 benchmark
    photo took 12.4 ms read from the photo itself (``[image]``: no halvings, every box as rounded) and
    1.5 ms from its halvings, on the group photo 60 and 14 ms (with the machine busy)."""
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    seen = np.round(boxes).astype(np.int64)
    for k in range(len(seen)):
        side = seen[k, 3] - seen[k, 1]
        level = 0 if side < 2 * size else min(len(halves) - 1, int(np.log2(side / size)))
        grid = np.round(seen[k] / 2**level).astype(np.int64)
        seen[k] = grid * 2**level
        out[k] = _crop(halves[level], grid, size)
    return out, seen.astype(np.float32)


def _crop(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        return np.zeros((size, size, 3), np.uint8)
    h, w = image.shape[:2]
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if (sx1, sy1, sx2, sy2) == (x1, y1, x2, y2):
        patch = image[y1:y2, x1:x2]  # inside the image: read in place, no padded copy
    else:
        patch = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
    shrink = patch.shape[0] > size
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _input(pixels: np.ndarray) -> np.ndarray:
    """uint8 (n, h, w, 3) or (h, w, 3) -> float32 (n, 3, h, w) scaled as the nets were trained."""
    x = pixels[None] if pixels.ndim == 3 else pixels
    x = x.transpose(0, 3, 1, 2).astype(np.float32, order="C")  # one copy: converted and laid out
    x -= np.float32(127.5)
    x *= np.float32(0.0078125)
    return x


class MTCNN:
    """The three-stage cascade. ``detect(rgb)`` -> (boxes (n, 4), scores (n,), points (n, 5, 2)).

    Args:
        min_face_size: smallest face side searched for, in pixels.
        thresholds: face-score thresholds of the three stages (the published 0.6, 0.7, 0.7).
        factor: ratio between pyramid scales.
    """

    version = "facerec-mtcnn-2"  # bump when the cascade's output changes (keys detection caches)
    PUBLISHED_THRESHOLDS = (0.6, 0.7, 0.7)

    def __init__(
        self,
        device: torch.device | str = "cpu",
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = PUBLISHED_THRESHOLDS,
        factor: float = 0.709,
        weights_dir: Path | None = None,
    ) -> None:
        self.device = str(device)
        self.min_face_size, self.thresholds, self.factor = min_face_size, thresholds, factor
        self.weights_dir = Path(weights_dir or wheel_weights_dir())
        self._runners: tuple | None = None
        #: What P-, R- and O-Net compute in, each ``fp32`` or ``bf16`` (OpenVINO on a CPU with native bf16).
        self.precisions = ("fp32",) * 3

    @functools.cached_property
    def nets(self) -> tuple[PNet, RNet, ONet]:
        """P-, R- and O-Net as PyTorch modules, loaded at first use (a service whose exported nets are
        cached never loads them)."""
        from models.mtcnn_nets import load_nets

        return load_nets(self.weights_dir, self.device)

    pnet = property(lambda self: self.nets[0], doc="P-Net's module")
    rnet = property(lambda self: self.nets[1], doc="R-Net's module")
    onet = property(lambda self: self.nets[2], doc="O-Net's module")

    @property
    def runners(self) -> tuple:
        """What the cascade calls for P-, R- and O-Net (numpy in, numpy out): PyTorch's modules unless
        :meth:`use_onnxruntime` was called."""
        if self._runners is None:
            self.use_torch()
        return self._runners

    @runners.setter
    def runners(self, runners: tuple) -> None:  # e.g. wrapped to time each call (bench/detector_profile.py)
        self._runners = tuple(runners)

    def use_torch(self) -> None:
        """Run the three nets with PyTorch on the cascade's device."""
        # Channels-last, as the photo is laid out (and as the conversion before numpy runners left it):
        # the cascade on the 640x480 photo fed planar took 9.6-13.0 ms against that code's 6.8-9.1 in
        # the same rounds; fed channels-last, 8.5-10.7 against 9.3-11.6.
        self._runners = tuple(TorchNet(net, self.device, channels_last=True) for net in self.nets)
        self.precisions = ("fp32",) * 3

    def exports(self) -> list[Export]:
        """How P-, R- and O-Net are exported for ONNX Runtime (P-Net with any image size)."""
        specs = (("pnet", (1, 3, 64, 64), {0: "n", 2: "h", 3: "w"}), ("rnet", (4, 3, 24, 24), {0: "n"}),
                 ("onet", (2, 3, 48, 48), {0: "n"}))  # fmt: skip
        return [
            Export(name, lambda i=i: self.nets[i], shape, dynamic, [self.weights_dir / f"{name}.pt"])
            for i, (name, shape, dynamic) in enumerate(specs)
        ]

    def use_onnxruntime(self, cache_dir: Path | None = None, threads: int | None = None) -> None:
        """Run the three nets on ONNX Runtime (``models.runtime``)."""
        self.use_exported("onnxruntime", cache_dir, threads)

    def use_exported(self, runtime: str, cache_dir: Path | None = None, threads: int | None = None) -> None:
        """Run the three exported nets on ``runtime``, ONNX Runtime or OpenVINO (``models.runtime``) --
        except P-Net, which stays on ONNX Runtime under OpenVINO: its input is each pyramid level, whose
        height and width follow the photo's, and OpenVINO compiles its kernels for every new shape
        (``bench/runtime_speed.py``'s ``pipeline_first_sight``, the known-people photos, each of another
        size: 48.2 ms a photo at first sight, 15.2 once seen, with P-Net on OpenVINO; 23.8 / 21.2 with it
        on ONNX Runtime), while P-Net in bf16 saves ~2 ms on a 640x480 photo once seen.

        Tried and not kept: levels with even sides padded to a few shapes (multiples of 32, 64, 128 by
        size: the output cells kept are exactly the unpadded ones), P-Net on OpenVINO in fp32 for a
        photo alone and on ONNX Runtime for photos sharing the cores. First sight then cost about what
        ONNX Runtime's does and the 640x480 photo took 8.1 ms instead of 9.7 alone, but two photos at
        once ran 123.7 photos/s instead of 136.6 at 12.4 instead of 11.9 ms of CPU each (the pipeline
        in process, 8 interleaved rounds; over HTTP 62.5 against 66.2 req/s with 4 clients in another
        run) -- and throughput, not a lone photo's latency, is what the service is short of."""
        self._runners = tuple(
            onnx_net(e, cache_dir, threads, "onnxruntime" if runtime == "openvino" and e.name == "pnet" else runtime)
            for e in self.exports()
        )
        self.precisions = tuple(r.precision for r in self._runners)

    @property
    def precision(self) -> str:
        """``bf16`` when any of the three nets computes in bf16, else ``fp32``."""
        return "bf16" if "bf16" in self.precisions else "fp32"

    def scales(self, height: int, width: int, min_face_size: float | None = None) -> list[float]:
        """Pyramid scales: the first maps the smallest face searched for onto P-Net's 12 px window."""
        scale, side, out = 12.0 / (min_face_size or self.min_face_size), min(height, width), []
        while side * scale >= 12:
            out.append(scale)
            scale *= self.factor
        return out

    def _proposals(self, halves: list[np.ndarray], min_face_size: float | None) -> np.ndarray:
        """Stage 1: (n, 9) rows of box, score, regression offsets from every pyramid level of
        ``halves[0]`` (``halves``: its :func:`halvings`)."""
        h, w = halves[0].shape[:2]
        found = []
        for scale in self.scales(h, w, min_face_size):
            hs, ws = int(np.ceil(h * scale)), int(np.ceil(w * scale))
            # Each level is resampled from the smallest halving at least its size, not from the full
            # photo: area resampling costs in proportion to the source's pixels, and a halving
            # (2 x 2 means) is OpenCV's fast path.
            source = next(s for s in reversed(halves) if s.shape[0] >= hs and s.shape[1] >= ws)
            level = cv2.resize(source, (ws, hs), interpolation=cv2.INTER_AREA)
            prob, reg = self.runners[0](_input(level))
            prob, reg = prob[0], reg[0]
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if not len(ys):
                continue
            # Output cell (y, x) saw the 12 x 12 window at (2x, 2y) of this level.
            cells = np.stack([xs, ys, xs, ys], 1).astype(np.float32) * 2 + np.array([0, 0, 12, 12], np.float32)
            true_scale = np.array([ws / w, hs / h, ws / w, hs / h], np.float32)  # after rounding the size
            rows = np.concatenate([cells / true_scale, prob[ys, xs, None], reg[:, ys, xs].T], 1)
            found.append(rows[nms(rows[:, :4], rows[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 9), np.float32)
        rows = np.concatenate(found)
        return rows[nms(rows[:, :4], rows[:, 4], 0.7)]

    def detect(
        self, image: np.ndarray, min_face_size: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in an RGB uint8 ``(H, W, 3)`` image, in no particular order; ``min_face_size``
        overrides the constructor's for this call (a larger one searches less of the pyramid)."""
        empty = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        halves = halvings(image, 16)
        rows = self._proposals(halves, min_face_size)
        if not len(rows):
            return empty
        boxes = square(regress(rows[:, :4], rows[:, 5:9]))
        # Stage 2: R-Net re-scores and refines every proposal, in one batch; large boxes are read from
        # the halvings (and R-Net's offsets apply to the boxes as read).
        patches, boxes = crops(halves, boxes, 24)
        score, reg = self.runners[1](_input(patches))
        keep = score > self.thresholds[1]
        boxes, score, reg = boxes[keep], score[keep], reg[keep]
        if not len(boxes):
            return empty
        keep = nms(boxes, score, 0.7)
        boxes = square(regress(boxes[keep], reg[keep]))
        # Stage 3: O-Net gives the final score, box and five points (relative to the boxes as read).
        patches, boxes = crops(halves, boxes, 48)
        score, reg, pts = self.runners[2](_input(patches))
        keep = score > self.thresholds[2]
        boxes, score, reg, pts = boxes[keep], score[keep], reg[keep], pts[keep]
        if not len(boxes):
            return empty
        size = boxes[:, 2:4] - boxes[:, 0:2]
        points = np.stack(
            [boxes[:, 0:1] + pts[:, 0:5] * size[:, 0:1], boxes[:, 1:2] + pts[:, 5:10] * size[:, 1:2]], axis=2
        )
        boxes = regress(boxes, reg)
        keep = nms(boxes, score, 0.7, mode="min")
        return boxes[keep].astype(np.float32), score[keep].astype(np.float32), points[keep].astype(np.float32)

"""The inference gate: how many photos are in the networks at once, and on how many threads each.

Rule: at most ``limit`` photos run detection and embedding at the same time (0: no limit; the rest of a
request -- decoding, the database, the search -- is outside the gate and overlaps). With
``share_cores``, a photo runs its exported networks (ONNX Runtime or OpenVINO) on one thread
(``models.runtime.single_threaded``) when it enters while another photo is inside, or has *arrived*
(:meth:`InferenceGate.arrive`: is being decoded or waits here); a photo alone keeps every core. On
PyTorch (a GPU) the service leaves threads alone: ``share_cores`` is off. The outputs are the same
either way (one graph, compiled or loaded twice; ``tests/test_runtime.py``).

Why: a photo alone is fastest spread over both cores, but two photos that each spread over both spend
CPU on thread hand-offs and wait for each other's cores. In process on this 2-core CPU (the service's
pipeline on the 640x480 benchmark photo from 2 threads, six alternating rounds of ``bench/share_cores.py``,
ONNX Runtime): one thread each gave a median 1.07x the photos per second (rounds 0.97-1.22) at 30.7-34.0
instead of 32.2-42.5 ms CPU a photo; an earlier run 1.09x. Over HTTP the gain was within the machine's
noise (README, "Performance"; ``bench/inference_gate.py``). Counting the photos that have arrived, not
only those inside, came with OpenVINO, whose networks take a photo 7 ms instead of 18: a photo then
often finds the gate empty while another request is being decoded, and ran spread over both cores
against it. Over HTTP (``python bench/inference_gate.py --settings 2/1``, two servers each, every network
on OpenVINO):
inside only 64.8 / 64.4 req/s with 4 clients and 58.8 / 59.5 with 16; arrived too 67.8 / 71.3 and
66.8 / 64.8, a lone client unchanged (68-75).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

from models.runtime import EXPORTED, single_threaded

if TYPE_CHECKING:
    from app.config import Settings
    from models.pipeline import FacePipeline


class InferenceGate:
    """``with gate() as shared:`` -- inside, the photo may run its networks; ``shared`` tells whether
    it runs them single-threaded because another photo was inside when it entered."""

    def __init__(self, limit: int, share_cores: bool) -> None:
        self.share_cores = share_cores
        self._slots = threading.BoundedSemaphore(limit) if limit else None
        self._lock = threading.Lock()
        self.inside = 0
        self.arrived = 0  # photos between arrive() and their end: decoding, waiting here, or inside

    @classmethod
    def for_pipeline(cls, settings: Settings, pipeline: FacePipeline) -> InferenceGate:
        """The service's gate for ``pipeline`` and ``settings``: cores are shared on the CPU runtimes only."""
        return cls(settings.inference_concurrency, settings.inference_share_cores and pipeline.runtime in EXPORTED)

    @contextmanager
    def arrive(self) -> Iterator[None]:
        """Around all of a photo's work from its decoding on: a photo that enters the networks while
        another has arrived (is being decoded, waits here or is inside) shares the cores too."""
        with self._lock:
            self.arrived += 1
        try:
            yield
        finally:
            with self._lock:
                self.arrived -= 1

    @contextmanager
    def __call__(self) -> Iterator[bool]:
        if self._slots is not None:
            self._slots.acquire()
        try:
            with self._lock:
                shared = self.share_cores and (self.inside > 0 or self.arrived > 1)
                self.inside += 1
            try:
                with single_threaded() if shared else nullcontext():
                    yield shared
            finally:
                with self._lock:
                    self.inside -= 1
        finally:
            if self._slots is not None:
                self._slots.release()

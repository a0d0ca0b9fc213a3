"""Per-stage wall-clock timings of one request, for the ``Server-Timing`` header and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings(dict):
    """Milliseconds per stage name; a stage entered twice accumulates."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + 1000 * (time.perf_counter() - t0)

    def header(self) -> str:
        """``decode;dur=3.1, detect;dur=40.2, ...`` (RFC: Server-Timing)."""
        return ", ".join(f"{k};dur={v:.2f}" for k, v in self.items())

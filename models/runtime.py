"""Where the networks run: PyTorch eager, or ONNX Runtime on CPU.

The choice is made by measurement (``bench/runtime_speed.py``; README, "Performance"): on this 2-core
CPU ONNX Runtime runs the detector's three small nets 1.3-3.3x faster than PyTorch eager (per-call
overhead dominates them: P-Net on a 49x37 pyramid level 0.22 -> 0.10 ms, R-Net on 45 proposals
4.8 -> 2.5 ms, O-Net 1.7 -> 0.5 ms) and the embedder 11% faster for one face (a batch of 2 with its
mirror image: 10.9 -> 9.7 ms). On a GPU PyTorch stays (``auto``).

Export. Each network is exported to ONNX from its loaded PyTorch module (``torch.export``, opset 18;
batch and, for P-Net, height and width dynamic; as fast under ONNX Runtime as the legacy
TorchScript exporter's graphs, measured: P-Net 2.27 vs 2.30 ms, the embedder 9.86 vs 10.03 ms) and the outputs are tested equal to PyTorch's within 1e-4
(``tests/test_runtime.py``). The service keeps the exported files in a cache folder, keyed by a hash
of the weights and the exporter's versions, so a restart does not export again (~10 s on this
CPU the first time, 0.2 s to read back);
``python -m models.runtime --out DIR`` writes them for users of other runtimes.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # PyTorch is imported where it is used: the service's imports do not wait for it
    import torch
    from torch import nn

log = logging.getLogger(__name__)

Runtime = Literal["auto", "torch", "onnxruntime"]
OPSET = 18  # the torch.export-based exporter's lowest
_calling = threading.local()  # per calling thread: .single (run the one-thread sessions)


@functools.cache
def default_threads() -> int:
    """Threads per ONNX Runtime session: PyTorch's count the first time this is asked (building a
    pipeline on ONNX Runtime then sets PyTorch's own to one, so a second build must not read it from there)."""
    import torch

    return torch.get_num_threads()


@contextmanager
def single_threaded() -> Iterator[None]:
    """Within the block, ONNX Runtime networks called from this thread run on this thread alone.

    For a photo that shares the cores with another: two photos each on one core waste less than two
    that each spread over both (thread hand-offs, one waiting for the other's core). The service's
    inference gate uses it (``app.services.gate``, where it is measured)."""
    before = running_single_threaded()
    _calling.single = True
    try:
        yield
    finally:
        _calling.single = before


def running_single_threaded() -> bool:
    """Whether this thread is inside :func:`single_threaded`."""
    return getattr(_calling, "single", False)


def resolve(runtime: Runtime, device: torch.device) -> str:
    """``auto``: ONNX Runtime on a CPU, PyTorch on a GPU."""
    if runtime == "auto":
        return "torch" if device.type == "cuda" else "onnxruntime"
    if runtime == "onnxruntime" and device.type != "cpu":
        raise ValueError(f"runtime onnxruntime runs on the CPU here; the device is {device} (use auto or torch)")
    if runtime not in ("torch", "onnxruntime"):
        raise ValueError(f"unknown runtime {runtime!r}; use auto, torch or onnxruntime")
    return runtime


def export_onnx(net: nn.Module, example: torch.Tensor, dynamic: dict[int, str]) -> bytes:
    """The network as an ONNX model (PyTorch's ``torch.export``-based exporter): input ``x`` with the
    ``dynamic`` axes free (index -> name), outputs as the module returns them."""
    import torch
    from torch.export import Dim

    shapes = {axis: Dim(name, min=1 if axis == 0 else 12, max=8192) for axis, name in dynamic.items()}
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            net, (example,), input_names=["x"], dynamic_shapes=(shapes,), opset_version=OPSET, dynamo=True
        )
    return program.model_proto.SerializeToString()


def _key(net: nn.Module, example: torch.Tensor, dynamic: dict[int, str]) -> str:
    import onnxruntime
    import torch

    h = hashlib.sha256(
        f"{torch.__version__}|{onnxruntime.__version__}|{OPSET}|{tuple(example.shape)}|{dynamic}".encode()
    )
    for name, value in net.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class OrtNet:
    """An ONNX Runtime session called like the module it was exported from: a CPU tensor in, a tensor
    (or a tuple of them) out.

    It holds a session on ``threads`` threads and, when that is more than one, a second on one thread,
    which calls made inside :func:`single_threaded` run (the same graph: equal outputs, tested). The
    second is made at its first such call: start-up does not wait for it, nor holds a service that never
    shares its cores one in memory."""

    def __init__(self, model: bytes, threads: int | None = None) -> None:
        threads = threads or default_threads()
        self.session = self._session(model, threads)
        self.outputs = len(self.session.get_outputs())
        self._model = model if threads > 1 else None  # kept until the one-thread session is made
        self._single = None if threads > 1 else self.session
        self._lock = threading.Lock()

    @property
    def single(self):
        """The one-thread session (the only session of a one-thread network)."""
        if self._single is None:
            with self._lock:
                if self._single is None:
                    self._single = self._session(self._model, 1)
                    self._model = None
        return self._single

    @staticmethod
    def _session(model: bytes, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's threads spin-wait after each run by default, taking the cores from whatever
        # runs next (PyTorch, numpy, the other requests): measured in the service, /identify 112 ms
        # with spinning against 49 ms for PyTorch eager on the same photo.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor):
        import torch

        session = self.single if running_single_threaded() else self.session
        out = session.run(None, {"x": np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)})
        tensors = tuple(torch.from_numpy(o) for o in out)
        return tensors[0] if self.outputs == 1 else tensors


def onnx_net(
    net: nn.Module,
    example: torch.Tensor,
    dynamic: dict[int, str],
    cache_dir: Path | None,
    name: str,
    threads: int | None = None,
) -> OrtNet:
    """``net`` on ONNX Runtime: read from ``cache_dir`` when exported before, else exported (and
    written there atomically when a cache folder is given)."""
    if cache_dir is None:
        return OrtNet(export_onnx(net, example, dynamic), threads)
    path = Path(cache_dir) / f"{name}-{_key(net, example, dynamic)}.onnx"
    if path.exists():
        return OrtNet(path.read_bytes(), threads)
    model = export_onnx(net, example, dynamic)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(model)
    tmp.replace(path)
    log.info("exported %s to %s", name, path)
    return OrtNet(model, threads)


def main(argv: list[str] | None = None) -> None:
    """Write the service's networks as ONNX files (what the service runs with ONNX Runtime)."""
    from models.pipeline import PipelineConfig, onnx_exports

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for the .onnx files")
    parser.add_argument("--weights", type=Path, default=PipelineConfig().weights, help="the embedder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (net, example, dynamic) in onnx_exports(PipelineConfig(weights=args.weights)).items():
        path = args.out / f"{name}.onnx"
        path.write_bytes(export_onnx(net, example, dynamic))
        print(f"{path}: input x {tuple(example.shape)}, dynamic axes {dynamic}")


if __name__ == "__main__":
    main()

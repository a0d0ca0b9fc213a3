"""Where the networks run: PyTorch eager, or on a CPU OpenVINO or ONNX Runtime.

The choice is made by measurement, network by network, on the calls the service's pipeline makes
for the benchmark photos (``python bench/runtime_speed.py``; ``bench/results/runtime_speed.json``;
README, "Performance"). On this machine's CPU (a Xeon with Intel AMX, which computes bfloat16
natively) OpenVINO is the fastest for every network: in bf16 the embedder (one face and its mirror
image) took 2.3 ms against ONNX Runtime's 9.8 (0.25 of it; 0.20 for the group photo's three faces),
P-Net over the 640x480 photo's pyramid 0.46, R-Net 0.36, O-Net 0.42; even in fp32 0.45-0.73 -- on
shapes it has seen: it compiles its kernels for every new input shape (P-Net in bf16 5.6 ms a call the
first time, 0.8 after; ONNX Runtime 2.2 / 2.1), so a batch is padded to a few sizes (:class:`OvNet`)
and P-Net, whose input size follows each photo's, stays on ONNX Runtime (``models.mtcnn``). So ``auto``
is OpenVINO on a CPU -- in bf16 where the CPU computes it natively (OpenVINO reports ``BF16``: AMX or
AVX-512 BF16), else in fp32 -- and PyTorch on a GPU. bf16 keeps 8 bits of mantissa
where fp32 keeps 24: the vectors stay within cosine 0.9999 of fp32's (the precision the GPU path runs
at too), so they are the same model version; boxes move by a fraction of a pixel. Measured through
the whole pipeline, the figures do not move (README, "Measured": LFW, held-out people, crowd
recall). ONNX Runtime (fp32; outputs equal to PyTorch's within 1e-4) stays selectable, and runs the
int8 embedder (``training.quantize``).

Every runtime is called the same way: a float32 numpy batch in, numpy arrays out (:class:`TorchNet`,
:class:`OrtNet`, :class:`OvNet`), and the code around the networks works in numpy. So a service whose
exported networks are cached never imports PyTorch: that import was 1.7-2.7 s of every start here.

Export. Each network is exported to ONNX from its loaded PyTorch module (``torch.export``, opset 18;
batch and, for P-Net, height and width dynamic; as fast under ONNX Runtime as the legacy
TorchScript exporter's graphs, measured: P-Net 2.27 vs 2.30 ms, the embedder 9.86 vs 10.03 ms), and
both CPU runtimes read that file. Outputs are tested equal to PyTorch's within 1e-4 in fp32
(``tests/test_runtime.py``). The service keeps the exported files in a cache folder, keyed by a hash
of the weight files, the networks' code and the exporter's versions (read from the installed
packages' metadata, not by importing them), so a restart neither exports again (~10 s on this CPU
the first time) nor imports PyTorch to learn that it need not;
``python -m models.runtime --out DIR`` writes them for users of other runtimes, and ``--cache DIR`` fills
a service's cache ahead of its first start (the Docker image is built with one).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # PyTorch is imported where it is used: the service's imports do not wait for it
    import torch
    from torch import nn

log = logging.getLogger(__name__)

Runtime = Literal["auto", "torch", "onnxruntime", "openvino"]
#: The runtimes that run the exported (ONNX) networks, on a CPU.
EXPORTED = ("onnxruntime", "openvino")
OPSET = 18  # the torch.export-based exporter's lowest
#: The modules that define our networks: an exported file is keyed by their code too, so a change
#: to a network is exported again even when its weights are not.
NETWORK_MODULES = ("models.backbones", "models.landmark_nets", "models.mtcnn_nets")
_calling = threading.local()  # per calling thread: .single (run the one-thread sessions)


@functools.cache
def default_threads() -> int:
    """Threads per ONNX Runtime session: ``OMP_NUM_THREADS`` when set (PyTorch's rule too), else the
    CPUs this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return available_cpus()


def available_cpus() -> int:
    """The CPUs this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def share_cpus(processes: int) -> int:
    """Unless ``OMP_NUM_THREADS`` is set, give this process's networks its share of the CPUs when
    ``processes`` like it run side by side (written to ``OMP_NUM_THREADS``, so every runtime agrees);
    returns :func:`default_threads`. Call it before any network is built."""
    if processes > 1 and not os.environ.get("OMP_NUM_THREADS"):
        os.environ["OMP_NUM_THREADS"] = str(max(1, available_cpus() // processes))
        default_threads.cache_clear()
    return default_threads()


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


def device_kind(device: str | torch.device) -> str:
    """``"cpu"``, ``"cuda"``, ... of a device given as a name (``"cuda:1"``) or a ``torch.device``."""
    return str(device).split(":")[0]


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively, as OpenVINO's CPU plugin reports it."""
    return "BF16" in _openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@functools.cache
def openvino_installed() -> bool:
    """Whether OpenVINO can be imported (a dependency; an environment assembled by hand, such as the GPU
    benchmark's, may lack it). Asked without importing it."""
    return importlib.util.find_spec("openvino") is not None


def resolve(runtime: Runtime, device: str | torch.device) -> str:
    """``auto``: OpenVINO on a CPU (ONNX Runtime where OpenVINO is not installed), PyTorch on a GPU."""
    kind = device_kind(device)
    if runtime == "auto":
        if kind != "cpu":
            return "torch"
        return "openvino" if openvino_installed() else "onnxruntime"
    if runtime in EXPORTED and kind != "cpu":
        raise ValueError(f"runtime {runtime} runs on the CPU here; the device is {device} (use auto or torch)")
    if runtime not in ("torch", *EXPORTED):
        raise ValueError(f"unknown runtime {runtime!r}; use auto, torch, onnxruntime or openvino")
    return runtime


class TorchNet:
    """A PyTorch module called like an :class:`OrtNet`: a float32 numpy batch in, float32 numpy arrays
    out (one, or a tuple as the module returns them), run in inference mode on ``device``.

    ``channels_last`` feeds the batch in that memory layout (the embedder's, faster on a CPU);
    ``bf16`` runs under bfloat16 autocast (outputs still float32)."""

    def __init__(self, module: nn.Module, device: str = "cpu", channels_last: bool = False, bf16: bool = False) -> None:
        self.module, self.device, self.channels_last, self.bf16 = module, device, channels_last, bf16
        self.precision = "bf16" if bf16 else "fp32"

    def __call__(self, x: np.ndarray):
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            if self.bf16:
                with torch.autocast(device_kind(self.device), dtype=torch.bfloat16):
                    out = self.module(batch)
            else:  # no autocast context at all: P-Net is called once per pyramid level
                out = self.module(batch)
            if isinstance(out, tuple):
                return tuple(o.float().cpu().numpy() for o in out)
            return out.float().cpu().numpy()


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


def _module_file(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # finds the file without running the module (nor PyTorch)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"network module {name} not found")
    return Path(spec.origin)


def cache_key(shape: tuple[int, ...], dynamic: dict[int, str], sources: list[Path | bytes]) -> str:
    """What an exported network is cached under: the exporter's and the runtime's versions, the example
    shape and dynamic axes, the networks' code (:data:`NETWORK_MODULES`) and ``sources``, what the
    module is built from (its weight files, given as paths, and its settings, given as bytes).
    Nothing here imports PyTorch."""
    h = hashlib.sha256(
        f"{metadata.version('torch')}|{metadata.version('onnxruntime')}|{OPSET}|{tuple(shape)}|{dynamic}".encode()
    )
    for source in [*(_module_file(m) for m in NETWORK_MODULES), *sources]:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        h.update(f"{len(data)}|".encode())
        h.update(data)
    return h.hexdigest()[:16]


class OrtNet:
    """An ONNX Runtime session called like :class:`TorchNet`: a float32 numpy batch in, an array (or a
    tuple of them) out.

    It holds a session on ``threads`` threads and, when that is more than one, a second on one thread,
    which calls made inside :func:`single_threaded` run (the same graph: equal outputs, tested). The
    second is made at its first such call: start-up does not wait for it, nor holds a service that never
    shares its cores one in memory."""

    precision = "fp32"

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

    def __call__(self, x: np.ndarray):
        session = self.single if running_single_threaded() else self.session
        out = session.run(None, {"x": np.ascontiguousarray(x, np.float32)})
        return out[0] if self.outputs == 1 else tuple(out)


@functools.cache
def _openvino_core():
    # OpenVINO's runtime reads ONNX files itself and sends nothing anywhere (its telemetry lives in
    # its model-conversion tools, which are not used here).
    import openvino

    return openvino.Core()


class _Compiled:
    """One OpenVINO compiled network and an inference request of each calling thread's own (a request
    is not thread-safe; calls of several threads run side by side up to the network's streams)."""

    def __init__(self, network) -> None:
        self.network = network
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.network.create_infer_request()
        # The outputs are copied out of the request (share_outputs=False), which the thread's next call reuses.
        return request.infer({0: x}, share_inputs=True).to_tuple()


def batch_bucket(n: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and 1.5 times them) that is >= ``n``."""
    power = 1 << max(n - 1, 0).bit_length()
    return power * 3 // 4 if power >= 4 and n <= power * 3 // 4 else power


class OvNet:
    """An OpenVINO network called like :class:`OrtNet`: the same exported ONNX file, compiled for the
    CPU in bf16 where the CPU computes it natively (``precision`` ``auto``), else in fp32.

    As :class:`OrtNet`, it holds a network compiled for ``threads`` threads and, when that is more than
    one, one for calls inside :func:`single_threaded` (compiled at its first such call) that runs each
    call on one thread: ``threads`` streams of one thread, as a stream runs one call at a time (photos
    sharing the cores on one one-thread stream were measured to wait for each other: two callers ran
    120-126 photos/s in process against one caller's 127-131)."""

    def __init__(self, model: bytes, threads: int | None = None, precision: Literal["auto", "bf16", "fp32"] = "auto"):
        threads = threads or default_threads()
        if precision == "auto":
            precision = "bf16" if native_bf16() else "fp32"
        if precision not in ("bf16", "fp32"):
            raise ValueError(f"unknown precision {precision!r}; use auto, bf16 or fp32")
        self.precision, self.threads = precision, threads
        self._graph = _openvino_core().read_model(model)
        # OpenVINO compiles its kernels for each new input shape at its first call (measured: ~6 ms for
        # R-Net, ~30 ms for the embedder, once per batch size): a batch is padded to the next of 1, 2, 3,
        # 4, 6, 8, 12, 16, ... (powers of two and 1.5 times them: at most a third more rows), so a network
        # sees a handful of shapes. Rows are independent, so the answers are the same.
        dims = self._graph.inputs[0].get_partial_shape()
        self.pad_batch = dims[0].is_dynamic and all(d.is_static for d in list(dims)[1:])
        self.compiled = self._compile(threads)
        self.outputs = len(self.compiled.network.outputs)
        self._single = None if threads > 1 else self.compiled
        self._lock = threading.Lock()

    def _compile(self, threads: int, streams: int = 1) -> _Compiled:
        config = {
            "INFERENCE_NUM_THREADS": threads * streams,
            "NUM_STREAMS": streams,
            "INFERENCE_PRECISION_HINT": {"bf16": "bf16", "fp32": "f32"}[self.precision],
        }
        return _Compiled(_openvino_core().compile_model(self._graph, "CPU", config))

    @property
    def single(self) -> _Compiled:
        """The network compiled to run each call on one thread (the only one of a one-thread network)."""
        if self._single is None:
            with self._lock:
                if self._single is None:
                    self._single = self._compile(1, self.threads)
        return self._single

    def __call__(self, x: np.ndarray):
        compiled = self.single if running_single_threaded() else self.compiled
        n = len(x)
        padded = batch_bucket(n) if self.pad_batch else n
        if padded > n:
            x = np.concatenate([x, np.zeros((padded - n, *x.shape[1:]), np.float32)])
        out = [o[:n] for o in compiled(np.ascontiguousarray(x, np.float32))]
        return out[0] if self.outputs == 1 else tuple(out)


#: The runner class of each runtime that runs exported networks.
RUNNERS = {"onnxruntime": OrtNet, "openvino": OvNet}


@dataclass(frozen=True)
class Export:
    """How one network is exported: its cache name, a function that builds its PyTorch module (called
    only when it is exported), the example input's shape, the dynamic axes (index -> name) and what
    the module is built from (:func:`cache_key`)."""

    name: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    dynamic: dict[int, str]
    sources: list[Path | bytes]

    def onnx(self) -> bytes:
        """The network as an ONNX model (builds the module and imports PyTorch)."""
        import torch

        return export_onnx(self.build(), torch.zeros(self.shape), self.dynamic)


class OneNetwork:
    """What a holder of one network (the embedder, the landmarker) shares: :attr:`runner` runs it with
    PyTorch (the subclass's ``model``, loaded at first use, on its ``device``) until
    :meth:`use_onnxruntime` puts it on ONNX Runtime from the subclass's ``export()``."""

    _runner = None

    def torch_net(self) -> TorchNet:
        """The PyTorch module as a runner (a subclass with layout or precision options overrides this)."""
        return TorchNet(self.model, self.device)

    @property
    def runner(self):
        """What the holder calls: a normalised float32 batch in, the network's outputs out."""
        if self._runner is None:
            self.use_torch()
        return self._runner

    def use_torch(self) -> None:
        """Run the network with PyTorch on the holder's device."""
        self._runner = self.torch_net()

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` (or ``int8``, the int8 embedder): what the network computes in where it
        runs now. Caches of its outputs are kept apart by it (``training.evaluate``), though bf16's
        vectors are the same model version."""
        return self.runner.precision

    def use_onnxruntime(self, cache_dir: Path | None = None, threads: int | None = None) -> None:
        """Run the network on ONNX Runtime, read from ``cache_dir`` or exported (:func:`onnx_net`)."""
        self.use_exported("onnxruntime", cache_dir, threads)

    def use_exported(self, runtime: str, cache_dir: Path | None = None, threads: int | None = None) -> None:
        """Run the exported network on ``runtime`` (one of :data:`EXPORTED`; :func:`onnx_net`)."""
        self._runner = onnx_net(self.export(), cache_dir, threads, runtime)


def exported_model(export: Export, cache_dir: Path | None) -> bytes:
    """The network as an ONNX model: read from ``cache_dir`` when exported before (its module is then
    never built, and PyTorch never imported), else exported (and written there atomically when a
    cache folder is given)."""
    if cache_dir is None:
        return export.onnx()
    path = Path(cache_dir) / f"{export.name}-{cache_key(export.shape, export.dynamic, export.sources)}.onnx"
    if path.exists():
        return path.read_bytes()
    model = export.onnx()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(model)
    tmp.replace(path)
    log.info("exported %s to %s", export.name, path)
    return model


def onnx_net(
    export: Export, cache_dir: Path | None, threads: int | None = None, runtime: str = "onnxruntime"
) -> OrtNet | OvNet:
    """The exported network (:func:`exported_model`) on ``runtime``, ONNX Runtime or OpenVINO."""
    if runtime not in RUNNERS:
        raise ValueError(f"runtime {runtime!r} does not run exported networks; use one of {', '.join(RUNNERS)}")
    return RUNNERS[runtime](exported_model(export, cache_dir), threads)


def main(argv: list[str] | None = None) -> None:
    """Write the service's networks as ONNX files (what the service runs with ONNX Runtime): plain
    files for other runtimes (``--out``), or the service's own cache (``--cache``)."""
    from models.pipeline import PipelineConfig, build_pipeline, onnx_exports

    parser = argparse.ArgumentParser(description=main.__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="folder for the .onnx files, one per network")
    where.add_argument(
        "--cache",
        type=Path,
        help="fill this cache folder (FACEREC_ONNX_CACHE_DIR) with what a service on the embedded defaults "
        "reads at start, so even its first start neither exports nor imports PyTorch (the Docker image does)",
    )
    parser.add_argument("--weights", type=Path, default=PipelineConfig().weights, help="the embedder")
    args = parser.parse_args(argv)
    if args.cache is not None:
        build_pipeline(PipelineConfig(weights=args.weights, runtime="onnxruntime"), cache_dir=args.cache)
        print(f"{args.cache}: {', '.join(sorted(p.name for p in args.cache.glob('*.onnx')))}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for export in onnx_exports(PipelineConfig(weights=args.weights)):
        path = args.out / f"{export.name}.onnx"
        path.write_bytes(export.onnx())
        print(f"{path}: input x {export.shape}, dynamic axes {export.dynamic}")


if __name__ == "__main__":
    main()

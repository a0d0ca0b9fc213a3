"""An int8 embedder for ONNX Runtime on a CPU, calibrated on training crops, recorded in the card.

    python -m training.quantize --weights models/weights/arcface_iresnet18_half_80_celeba.pt \\
        --data ~/.cache/facerec/celeba/train

Exports the embedder as the service does (``models.runtime``), then quantizes it statically with ONNX
Runtime (QDQ; weights int8 per output channel, activations uint8) using the activation ranges of
``--crops`` training crops (drawn with ``--seed``; never held-out or LFW people). Writes
``<weights stem>.int8.onnx`` beside the weights and an ``int8`` entry in the card (file, SHA-256,
calibration, the ONNX Runtime version); the service runs it with ``FACEREC_EMBEDDER_INT8=1``.
Whether it is good enough is measured, not assumed: ``training.evaluate --embedder-int8`` and
``training.heldout --embedder-int8`` give its figures beside the fp32 ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import tempfile
from pathlib import Path

import torch

from models.embedder import Embedder
from models.inputs import hwc_batch, resize_crop
from models.runtime import export_onnx
from training.data import face_files, list_identity_folders
from training.lfw import read_rgb

log = logging.getLogger("training.quantize")


def calibration_batches(files: list[Path], input_size: int, batch: int = 16):
    """The network's input for ``files``, as the embedder normalises it, in batches."""
    for i in range(0, len(files), batch):
        crops = [resize_crop(read_rgb(f), input_size) for f in files[i : i + batch]]
        yield hwc_batch(crops)


def quantize(weights: Path, data: Path, crops: int, seed: int) -> Path:
    from onnxruntime import __version__ as ort_version
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    embedder = Embedder(weights)
    size = embedder.card.input_size
    files = [f for _, f in face_files(list_identity_folders(Path(data).expanduser()))]  # as training lists them
    if len(files) < crops:
        raise ValueError(f"{data} has {len(files)} crops; --crops {crops} asks for more")
    random.Random(seed).shuffle(files)
    chosen = files[:crops]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = ({"x": x} for x in calibration_batches(chosen, size))

        def get_next(self):
            return next(self.batches, None)

    out = weights.with_suffix(".int8.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        fp32.write_bytes(export_onnx(embedder.model, torch.zeros(2, 3, size, size), {0: "n"}))
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["int8"] = {
        "file": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "quantization": "ONNX Runtime static QDQ: weights int8 per output channel, activations uint8 (MinMax)",
        "calibration": f"{crops} crops drawn (seed {seed}) from the training tree {data}; no held-out or LFW person",
        "onnxruntime": ort_version,
        "reproduce": f"python -m training.quantize --weights {weights} --data {data} --crops {crops} --seed {seed}",
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    log.info("wrote %s (%d bytes) and the card's int8 entry", out, out.stat().st_size)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="a training tree (identity folders of crops)")
    parser.add_argument("--crops", type=int, default=512, help="calibration crops (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.crops < 1:
        parser.error(f"--crops={args.crops} must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quantize(args.weights, args.data.expanduser(), args.crops, args.seed)


if __name__ == "__main__":
    main()

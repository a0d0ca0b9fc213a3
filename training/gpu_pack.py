"""Pack the training crops small enough to travel to a GPU machine (``training/gpu_train.sh`` trains there).

    python -m training.gpu_pack --out .gpu/crops.tar.gz

The shipped recipe trains on the re-aligned 112 px crops resized to 80 px (574 MB of PNG; 420 MB once
decoded), more than the 64 MiB a device call may carry. This writes each crop at the recipe's input size
as lossy WebP (quality 90: about 41 MB for 23,037 crops, a mean absolute error of about 2 grey levels
per pixel) into one gzipped tar (tar pads each small file to 512-byte blocks), with the same identity
folders and file stems, so the training code reads them unchanged (same file order, same labels, same
held-out split) and the card's ``realigned_with`` still resolves. The crops carry research-use licences: the tar goes to ``.gpu/``, which git ignores, and is
never committed or shipped.

The CelebA-scale set (86,338 crops; ``--config training/configs/arcface_iresnet18_half_80_celeba.yaml``)
is 63.1 MB at quality 50, 82.8 MB at 75 (measured; ``reports/celeba.md`` says what each costs the
held-out people): ``--max-mb 60`` splits it into parts that each fit one device call.
"""

from __future__ import annotations

import argparse
import io
import logging
import tarfile
from pathlib import Path

import cv2

from training.config import load_config
from training.data import face_files, list_identity_folders, load_face_folder

log = logging.getLogger("training.gpu_pack")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        default="training/configs/arcface_iresnet18_half_80_lm68_light.yaml",
        help="training config whose data_dir and input_size are packed",
    )
    parser.add_argument("--quality", type=int, default=90, help="WebP quality, 1-100 (default 90)")
    parser.add_argument("--out", type=Path, default=Path(".gpu/crops.tar.gz"))
    parser.add_argument(
        "--max-mb",
        type=float,
        default=0.0,
        help="split into parts <out stem>.1.tar.gz, .2 ... of at most this many MB of crops each, one "
        "per device call (a warm machine keeps what earlier calls carried); 0: one file",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    cfg = load_config(args.config, [])
    root = cfg.resolved_data_dir()
    folders = list_identity_folders(root)
    # The decoded, resized crops exactly as training sees them (the .npz cache when it exists).
    data = load_face_folder(folders, cfg.input_size, cfg.resolved_cache_dir())
    stems = [(f.parent.name, f.stem) for _, f in face_files(folders)]
    if len(stems) != len(data.labels):
        raise RuntimeError(
            f"{root} holds {len(stems)} images but the cache {len(data.labels)}; "
            "delete the stale faces_*px_*.npz in the cache folder and run again"
        )
    if not stems:
        raise RuntimeError(f"{root} holds no crops to pack")
    if args.max_mb < 0:
        parser.error(f"--max-mb={args.max_mb} must be positive, or 0 for one file")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stem = args.out.name.removesuffix(".tar.gz")
    limit = args.max_mb * 1e6 or float("inf")
    parts: list[Path] = []
    total = part_bytes = 0
    tar = None
    for (folder, stem_), image in zip(stems, data.images):
        ok, buf = cv2.imencode(
            ".webp",
            cv2.cvtColor(image.transpose(1, 2, 0), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_WEBP_QUALITY, args.quality],
        )
        if not ok:
            raise RuntimeError(f"WebP encoding failed for {folder}/{stem_}")
        if tar is None or part_bytes + len(buf) > limit:
            if tar is not None:
                tar.close()
            parts.append(args.out if limit == float("inf") else args.out.with_name(f"{stem}.{len(parts) + 1}.tar.gz"))
            tar, part_bytes = tarfile.open(parts[-1], "w:gz"), 0
        info = tarfile.TarInfo(f"{folder}/{stem_}.webp")
        info.size = len(buf)
        tar.addfile(info, io.BytesIO(buf.tobytes()))
        total += len(buf)
        part_bytes += len(buf)
    # What training.export reads beside the crops for the card: the realignment summaries, and the
    # report of a training.celeba build (which sits beside its train/ folder).
    for summary in sorted(root.glob("realign_*of*.json")):
        tar.add(summary, arcname=summary.name)
    tar.close()
    build = root.parent / "build.json"
    if root.name == "train" and build.exists():
        log.info("the card also reads %s: carry it to <data_dir>/../build.json", build)
    log.info(
        "packed %d crops of %d identities (%d px, WebP %d): %.1f MB in %s",
        len(stems),
        len(folders),
        cfg.input_size,
        args.quality,
        total / 1e6,
        ", ".join(f"{p} ({p.stat().st_size / 1e6:.1f} MB)" for p in parts),
    )


if __name__ == "__main__":
    main()

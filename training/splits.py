"""Which people are never trained on: the fixed held-out split of the CelebA identities.

Every decision about a model -- model selection, early stopping, schedule choices and the
threshold calibration written into the model card -- is made on these people, never on LFW (the
test set). The rule is a pure function of the CelebA identity number, so anyone can recompute it:

    held out  <=>  the id is not one of the shared training set's ``celeba_<id>`` folders
                   and  int(sha1("celeba:<id>").hexdigest(), 16) % 20 == 0

That is about 5% of the manifest's people (``python -m training.splits`` lists them). The shared
set's CelebA people are excluded from the rule because every embedder shipped before this split
was trained on them: the old and the new model must both be strangers to the held-out people for
a fair comparison. An identity merged with a held-out one as the same person (the builder's
duplicate check) is held out too, so nobody is on both sides.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

HOLDOUT_MODULUS = 20


def celeba_folder(celeba_id: int) -> str:
    """The identity folder name used for a CelebA person, in the shared set and in the built set."""
    return f"celeba_{int(celeba_id)}"


def hash_selects(celeba_id: int) -> bool:
    """The id-only part of the rule (stable, documented, independent of any file listing)."""
    digest = hashlib.sha1(f"celeba:{int(celeba_id)}".encode()).hexdigest()
    return int(digest, 16) % HOLDOUT_MODULUS == 0


def shared_celeba_ids(shared_train: Path) -> set[int]:
    """CelebA ids that already have a folder in the shared training set (trained on by every
    shipped embedder)."""
    return {int(p.name.split("_", 1)[1]) for p in Path(shared_train).glob("celeba_*") if p.is_dir()}


def is_heldout(celeba_id: int, shared_ids: set[int]) -> bool:
    return int(celeba_id) not in shared_ids and hash_selects(celeba_id)


def main(argv: list[str] | None = None) -> None:
    from training.celeba import read_manifest
    from training.config import data_root

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None, help="default: <FACEREC_DATA>/celeba/manifest.tsv.gz")
    args = parser.parse_args(argv)
    root = data_root()
    rows = read_manifest(args.manifest or root / "celeba" / "manifest.tsv.gz")
    shared = shared_celeba_ids(root / "recognition" / "train")
    ids = sorted({r.celeba_id for r in rows})
    held = [i for i in ids if is_heldout(i, shared)]
    print(
        f"{len(held)} of {len(ids)} manifest identities held out "
        f"({sum(r.celeba_id in set(held) for r in rows)} photos):"
    )
    print(" ".join(str(i) for i in held))


if __name__ == "__main__":
    main()

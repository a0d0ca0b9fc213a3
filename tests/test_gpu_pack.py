"""The crops packed for a GPU machine load back as the same training set (order, labels, pixels)."""

import tarfile

import cv2
import numpy as np
import yaml

from training import gpu_pack
from training.data import list_identity_folders, load_face_folder


def crop_tree(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "crops"
    for person, names in {"ann": ["a.1", "a.12", "a.2"], "bob": ["b_0001", "b_0002"]}.items():
        (src / person).mkdir(parents=True)
        for name in names:
            # Smooth images (as faces are): lossy WebP keeps them to a few grey levels.
            small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            cv2.imwrite(str(src / person / f"{name}.png"), cv2.resize(small, (112, 112), interpolation=cv2.INTER_CUBIC))
    (src / "realign_0of1.json").write_text('{"landmarks": "models/weights/landmarks_integral_96.pt"}')
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"name": "t", "input_size": 80, "data_dir": str(src), "cache_dir": str(tmp_path / "cache")})
    )
    return src, config


def test_packed_crops_load_back_as_the_same_training_set(tmp_path):
    src, config = crop_tree(tmp_path)
    out = tmp_path / "crops.tar.gz"
    gpu_pack.main(["--config", str(config), "--out", str(out)])

    unpacked = tmp_path / "unpacked"
    with tarfile.open(out) as tar:
        tar.extractall(unpacked, filter="data")
    assert (unpacked / "realign_0of1.json").exists()
    before = load_face_folder(list_identity_folders(src), 80, None)
    after = load_face_folder(list_identity_folders(unpacked), 80, None)
    assert after.class_names == before.class_names
    assert after.labels.tolist() == before.labels.tolist()
    assert after.images.shape == before.images.shape == (5, 3, 80, 80)
    assert np.abs(after.images.astype(int) - before.images.astype(int)).mean() < 3


def test_a_pack_split_into_parts_unpacks_to_the_same_training_set(tmp_path):
    src, config = crop_tree(tmp_path)
    gpu_pack.main(["--config", str(config), "--out", str(tmp_path / "crops.tar.gz"), "--max-mb", "0.0015"])
    parts = sorted(tmp_path.glob("crops.*.tar.gz"))
    assert len(parts) >= 2 and not (tmp_path / "crops.tar.gz").exists()
    unpacked = tmp_path / "unpacked"
    for part in parts:
        with tarfile.open(part) as tar:
            assert sum(m.size for m in tar.getmembers() if m.name.endswith(".webp")) <= 1500
            tar.extractall(unpacked, filter="data")
    before = load_face_folder(list_identity_folders(src), 80, None)
    after = load_face_folder(list_identity_folders(unpacked), 80, None)
    assert after.labels.tolist() == before.labels.tolist()
    assert np.abs(after.images.astype(int) - before.images.astype(int)).mean() < 3

"""The 68-point helpers and landmark metrics, against values worked out by hand."""

import cv2
import numpy as np
import pytest

from models.landmarks import FLIP_68, five_from_68
from tests.helpers import sigterm_in_step
from training.landmark_metrics import cumulative_error, failure_rate, nme


def face(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 100, (68, 2))


def test_flip_permutation_is_an_involution_and_swaps_the_eyes_and_mouth_corners():
    assert sorted(FLIP_68) == list(range(68)) and (FLIP_68[FLIP_68] == np.arange(68)).all()
    assert FLIP_68[36] == 45 and FLIP_68[39] == 42 and FLIP_68[48] == 54 and FLIP_68[30] == 30
    assert FLIP_68[0] == 16 and FLIP_68[8] == 8 and FLIP_68[17] == 26 and FLIP_68[31] == 35


def test_five_points_from_68():
    p = face()
    five = five_from_68(p)
    assert five.shape == (5, 2)
    assert np.allclose(five[0], p[36:42].mean(0)) and np.allclose(five[1], p[42:48].mean(0))
    assert np.allclose(five[2:], p[[30, 48, 54]])


def test_nme_known_values():
    truth = face()[None].repeat(2, 0)
    truth[:, 36], truth[:, 45] = (10, 50), (60, 50)  # inter-ocular distance 50
    pred = truth.copy()
    pred[0] += (3, 4)  # every point off by 5 px -> 10%
    pred[1, 0] += (0, 68 * 0.5)  # one point off by 34 px -> mean 0.5 px -> 1%
    assert nme(pred, truth) == pytest.approx([10.0, 1.0])
    assert failure_rate(nme(pred, truth), 8.0) == 0.5
    with pytest.raises(ValueError):
        nme(pred[:, :5], truth[:, :5])


def test_cumulative_error_curve():
    grid, share = cumulative_error(np.array([1.0, 2.0, 3.0, 20.0]), max_error=10, num=11)
    assert grid[1] == 1.0 and share[0] == 0.0 and share[1] == 0.25 and share[3] == 0.75 and share[-1] == 0.75


def test_crop_round_trip_and_flip_keep_points_on_the_same_pixels():
    import cv2

    from models.landmarker import apply_affine, crop_matrix, invert_affine
    from training.landmark_data import make_crop

    rng = np.random.default_rng(0)
    image = np.zeros((200, 240, 3), np.uint8)
    points = rng.uniform(60, 160, (68, 2)).astype(np.float32)
    for x, y in points.astype(int):
        image[y, x] = 255
    box = np.array([50, 50, 170, 170], np.float32)
    m = crop_matrix(box, 96, 1.3, angle_deg=15, shift=(0.05, -0.02))
    assert np.allclose(apply_affine(invert_affine(m), apply_affine(m, points)), points, atol=1e-4)
    crop, pts = make_crop(image, box, points, 96, 1.3, rng)  # augmented, maybe flipped
    assert crop.shape == (96, 96, 3) and pts.shape == (68, 2)
    blurred = cv2.GaussianBlur(crop.max(2).astype(np.float32), (5, 5), 0)
    inside = [(x, y) for x, y in pts if 2 <= x < 94 and 2 <= y < 94]
    assert inside and np.mean([blurred[int(round(y)), int(round(x))] > 0 for x, y in inside]) > 0.8


def test_landmark_training_smoke_export_and_predict(tmp_path):
    import torch

    from models.landmarker import Landmarker
    from training.train_landmarks import export, load_landmark_config, train

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 120, 3), dtype=np.uint8) for _ in range(6)]
    points = rng.uniform(30, 90, (6, 68, 2)).astype(np.float32)
    boxes = np.tile(np.array([[25, 25, 95, 95]], np.float32), (6, 1))
    cfg = load_landmark_config(
        None,
        [
            f"out_dir={tmp_path}",
            "input_size=32",
            "batch_size=4",
            "steps=3",
            "warmup_steps=1",
            "checkpoint_every=2",
            "threads=1",
            "bf16=false",
        ],
    )
    run = train(cfg, resume=False, data=(images, points, boxes, [6]))
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 3
    cfg.steps = 4
    train(cfg, resume=True, data=(images, points, boxes, [6]))
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 4
    cfg.lr = 1.0  # a change resume would otherwise ignore
    with pytest.raises(ValueError, match=r"differs in \['lr'\]"):
        train(cfg, resume=True, data=(images, points, boxes, [6]))
    weights = export(run, tmp_path / "w" / "lm.pt")
    pred = Landmarker(weights).predict(images[0], [boxes[0], boxes[1]])
    assert pred.shape == (2, 68, 2) and np.isfinite(pred).all()
    assert Landmarker(weights).predict(images[0], []).shape == (0, 68, 2)


def test_landmark_training_stops_on_a_signal_with_a_checkpoint_and_resumes(tmp_path, monkeypatch):
    import signal

    import torch

    import training.train_landmarks as module
    from training.train_landmarks import load_landmark_config, train

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 120, 3), dtype=np.uint8) for _ in range(6)]
    points = rng.uniform(30, 90, (6, 68, 2)).astype(np.float32)
    boxes = np.tile(np.array([[25, 25, 95, 95]], np.float32), (6, 1))
    sets = [f"out_dir={tmp_path}", "input_size=32", "batch_size=4", "steps=5", "warmup_steps=1"]
    cfg = load_landmark_config(None, [*sets, "checkpoint_every=10", "threads=1", "bf16=false"])
    data = (images, points, boxes, [6])
    with sigterm_in_step(monkeypatch, module, 1), pytest.raises(SystemExit) as stopped:
        train(cfg, resume=False, data=data)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert torch.load(cfg.run_dir() / "checkpoint.pt", weights_only=False)["step"] == 2  # no checkpoint was due
    run = train(cfg, resume=True, data=data)
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 5


def test_split_share_sets_each_splits_part_of_a_batch():
    from training.train_landmarks import sample_probabilities

    assert sample_probabilities([3, 1], ()) is None
    p = sample_probabilities([3, 1], (1.0, 1.0))
    assert np.allclose(p, [1 / 6, 1 / 6, 1 / 6, 1 / 2]) and np.isclose(p.sum(), 1)
    with pytest.raises(ValueError, match="one non-negative share per split"):
        sample_probabilities([3, 1], (1.0,))


def test_integral_landmark_net_answers_inside_the_crop_at_the_heatmap_peak():
    import torch

    from models.registry import create_model

    net = create_model("landmark_integral", input_size=32).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 68, 2) and (out > 0).all() and (out < 1).all()
    # A sharp peak on cell (x=5, y=2) of the 8x8 map gives that cell's centre, (4 * 5 + 1.5) / 32 etc.
    logits = torch.full((1, 68, 64), -50.0)
    logits[0, :, 2 * 8 + 5] = 50.0
    prob = logits.softmax(-1)
    assert torch.allclose(prob @ net.grid_x, torch.tensor(21.5 / 32)) and torch.allclose(
        prob @ net.grid_y, torch.tensor(9.5 / 32)
    )
    net.train()
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_service_with_the_68_point_aligner_returns_68_points(tmp_path, known):
    """The wiring, with a randomly initialised landmark net (accuracy is measured in reports/landmarks.md)."""
    import json

    import torch

    from models import create_model
    from tests.helpers import files, make_client

    weights = tmp_path / "lm.pt"
    torch.save(
        {
            k: v.half() if v.is_floating_point() else v
            for k, v in create_model("landmark_resnet", input_size=64).state_dict().items()
        },
        weights,
    )
    weights.with_suffix(".json").write_text(
        json.dumps(
            {"name": "lm", "version": "lm-test", "architecture": "landmark_resnet", "input_size": 64, "crop_scale": 1.3}
        )
    )
    with make_client(tmp_path / "state", aligner="landmarks68", landmark_weights=weights) as client:
        r = client.post("/embed", files=files([known / "train" / "obama" / "obama2.jpg"], "image"))
        assert r.status_code == 200
        face = r.json()["faces"][0]
        assert len(face["landmarks68"]) == 68 and len(face["landmarks"]) == 5
        assert r.json()["model_version"].endswith("+lm-test")
        r = client.post("/identify", files=files([known / "train" / "obama" / "obama2.jpg"], "image"))
        assert "landmarks;dur=" in r.headers["server-timing"]


def test_68_point_aligner_without_weights_is_refused(tmp_path):
    from app.config import Settings

    with pytest.raises(ValueError, match="FACEREC_ALIGNER=landmarks68"):
        Settings(state_dir=tmp_path, aligner="landmarks68", landmark_weights=tmp_path / "missing.pt")


def test_both_point_sources_land_near_the_template_on_training_crops(data):
    """The offsets report's measurement on a few real training crops: MTCNN's and our network's five
    points both fall within a few pixels of the template the crops were aligned to."""
    from app.config import Settings
    from models.aligner import ARCFACE_TEMPLATE
    from models.landmarker import Landmarker
    from training.alignment_offsets import five_point_sources

    paths = sorted((data / "recognition" / "train").glob("pins_*/*.jpg"))[::2000][:6]
    mtcnn, ours = five_point_sources(paths, Landmarker(Settings.model_fields["landmark_weights"].default))
    assert mtcnn.shape == ours.shape and len(mtcnn) >= 5 and mtcnn.shape[1:] == (5, 2)
    assert np.abs(mtcnn.mean(0) - ARCFACE_TEMPLATE).max() < 6 and np.abs(ours.mean(0) - ARCFACE_TEMPLATE).max() < 6


def test_realigned_training_crop_puts_our_points_on_the_template(data):
    """``training.realign`` warps a crop so that our network's five points sit on the template: measured
    again on the re-aligned crop, the similarity transform onto the template is (near) the identity.
    (The points themselves keep a residual: no face has exactly the template's shape.)"""
    from app.config import Settings
    from models.aligner import ARCFACE_TEMPLATE, FivePointAligner, similarity_transform
    from models.detector import MTCNNDetector
    from models.landmarker import Landmarker
    from training.realign import PAD, locate, realign

    def displacement(points):  # mean distance the alignment transform moves the points
        m = similarity_transform(points, ARCFACE_TEMPLATE)
        return np.linalg.norm(points @ m[:, :2].T + m[:, 2] - points, axis=1).mean()

    landmarker = Landmarker(Settings.model_fields["landmark_weights"].default)
    detector = MTCNNDetector(min_face_size=20, min_score=0.5)
    before, after = [], []
    for path in sorted((data / "recognition" / "train").glob("pins_*/*.jpg"))[1::2500][:4]:
        crop = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        image, five = realign(crop, detector, landmarker, FivePointAligner())
        assert image.shape == (112, 112, 3) and image.dtype == np.uint8
        padded, face, _ = locate(image, detector)
        before.append(displacement(five))
        after.append(displacement(five_from_68(landmarker.predict(padded, [face.box])[0]) - PAD))
    assert np.mean(after) < 0.6 and np.mean(after) < 0.4 * np.mean(before), (before, after)

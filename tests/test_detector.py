"""Our MTCNN cascade: the nets against the reference implementation whose weights we load, NMS by
hand, and recall on dlib's hand-marked crowd photos (real photos, the service's detector settings)."""

import numpy as np
import pytest
import torch

from models.mtcnn import MTCNN, crops, halvings, nms, nms_loop, square


@pytest.fixture(scope="module")
def cascade():
    return MTCNN(min_face_size=40)


def test_nets_equal_the_reference_nets_with_the_same_weights(cascade):
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    torch.manual_seed(0)
    with torch.no_grad():
        x = torch.randn(1, 3, 40, 50)
        ref_reg, ref_prob = PNet().eval()(x)
        prob, reg = cascade.pnet(x)
        assert torch.allclose(prob, ref_prob[:, 1], atol=1e-5) and torch.allclose(reg, ref_reg, atol=1e-5)
        x = torch.randn(5, 3, 24, 24)
        ref_reg, ref_prob = RNet().eval()(x)
        prob, reg = cascade.rnet(x)
        assert torch.allclose(prob, ref_prob[:, 1], atol=1e-5) and torch.allclose(reg, ref_reg, atol=1e-5)
        x = torch.randn(5, 3, 48, 48)
        ref_reg, ref_pts, ref_prob = ONet().eval()(x)
        prob, reg, pts = cascade.onet(x)
        assert torch.allclose(prob, ref_prob[:, 1], atol=1e-5) and torch.allclose(pts, ref_pts, atol=1e-5)


def test_the_cascade_scales_every_pixel_value_as_its_nets_were_trained():
    """(x - 127.5) / 128 in float32, computed in numpy as PyTorch computed it before (bit for bit)."""
    from models.mtcnn import _input

    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    got = _input(pixels)
    expected = torch.from_numpy(pixels)[None].permute(0, 3, 1, 2).float().sub_(127.5).mul_(0.0078125).numpy()
    assert got.shape == (1, 3, 16, 16) and got.flags.c_contiguous
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_nms_and_square_known_values():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    # IoU(0, 1) = 81 / 119 = 0.68; box 3 lies inside boxes 0 and 1: IoU 16 / 100, but 16 / 16 by the smaller box.
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.7).tolist() == [3, 0, 1, 2]
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [3, 2]
    assert square(np.array([[0, 0, 4, 10]], np.float32)).tolist() == [[-3, 0, 7, 10]]


@pytest.mark.parametrize("mode", ["union", "min"])
def test_nms_keeps_exactly_what_the_loop_keeps_with_tied_scores_and_empty_boxes(mode):
    rng = np.random.default_rng(0)
    for n in [0, 1, 2, *rng.integers(3, 200, 300)]:
        xy = rng.uniform(0, 100, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(0, 60, (n, 2)).astype(np.float32)], 1)
        scores = rng.choice(np.array([1.0, 0.99, 0.9, 0.7], np.float32), n)  # P-Net saturates at 1.0: ties
        for threshold in (0.5, 0.7):
            assert nms(boxes, scores, threshold, mode).tolist() == nms_loop(boxes, scores, threshold, mode).tolist()


def test_large_boxes_are_read_from_halvings_and_the_boxes_returned_are_the_ones_read(data):
    from app.services.images import decode_image

    path = data / "photos" / "known_people" / "knn_examples" / "test" / "obama_and_biden.jpg"
    image = decode_image(path.read_bytes(), path.name, max_bytes=10**8, max_pixels=10**8).pixels
    rng = np.random.default_rng(0)
    sides = np.array([20, 30, 47, 48, 60, 95, 96, 130, 260, 500, 900], np.float32)
    centres = rng.uniform([-50, -50], [image.shape[1] + 50, image.shape[0] + 50], (len(sides), 2)).astype(np.float32)
    boxes = np.concatenate([centres - sides[:, None] / 2, centres + sides[:, None] / 2], 1)
    halves = halvings(image, 5)
    assert [h.shape[:2] for h in halves[:3]] == [(1428, 2000), (714, 1000), (357, 500)]
    patches, seen = crops(halves, boxes, 24)
    rounded = np.round(boxes)
    for k, side in enumerate(sides):
        level = 0 if side < 48 else int(np.log2(side / 24))
        assert np.all(seen[k] % 2**level == 0), (side, seen[k])
        assert np.abs(seen[k] - rounded[k]).max() <= 2 ** (level - 1) if level else np.array_equal(seen[k], rounded[k])
    small = sides < 48
    direct = lambda b: crops([image], b, 24)[0]  # noqa: E731  every box read from the photo itself
    assert np.array_equal(patches[small], direct(boxes[small]))  # below twice the crop size: the same
    # Above it, a mean of 2 x 2 blocks then area resampling of what remains: close to one area resampling.
    diff = np.abs(patches[~small].astype(int) - direct(seen[~small]).astype(int))
    assert diff.mean() < 1.5, diff.mean()


@pytest.mark.parametrize("where", ["torch", "served"])
def test_finds_the_hand_marked_crowd_faces_and_nothing_on_dogs(data, tmp_path, where):
    """On PyTorch, and on the runtime the service runs here (OpenVINO in bf16 on a CPU with native bf16)."""
    from app.services.images import decode_image
    from models import runtime
    from models.pipeline import PipelineConfig, build_detector
    from training.crowds import crowd_recall

    crowds = data / "photos" / "crowds"
    detector = build_detector(PipelineConfig())  # the service's settings
    if where == "served":
        detector.mtcnn.use_exported(runtime.resolve("auto", "cpu"), tmp_path)
    load = lambda p: decode_image(p.read_bytes(), p.name, max_bytes=10**8, max_pixels=10**8).pixels  # noqa: E731
    recall = crowd_recall(detector, crowds, load)
    found, total, extra = recall["found"], recall["marked"], recall["unmatched_detections"]
    dogs = decode_image((crowds / "dogs.jpg").read_bytes(), "dogs.jpg", max_bytes=10**8, max_pixels=10**8).pixels
    assert total == 43 and found >= 42, f"found {found} of {total} marked faces"
    assert extra <= 3, f"{extra} detections match no marked face"
    assert detector.detect(dogs) == []

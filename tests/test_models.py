import numpy as np
import pytest
import torch

from models import create_model, list_models
from models.aligner import ARCFACE_TEMPLATE, FivePointAligner, similarity_transform


@pytest.mark.parametrize("name", [n for n in list_models() if not n.startswith("landmark")])
def test_every_model_forward_backward_without_nan(name):
    torch.manual_seed(0)
    model = create_model(name, embedding_dim=16, input_size=32)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 16)
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_landmark_model_forward_backward_without_nan():
    torch.manual_seed(0)
    model = create_model("landmark_resnet", input_size=32)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 68, 2)
    out.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_unknown_model_lists_valid_names():
    with pytest.raises(KeyError, match="iresnet18_half"):
        create_model("resnet9000")


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(0).uniform(0, 100, (5, 2))
    dst = src @ (scale * rot).T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(matrix[:, :2], scale * rot, atol=1e-9)
    assert np.allclose(matrix[:, 2], shift, atol=1e-9)


def test_aligner_maps_points_onto_the_template():
    """A synthetic face whose 5 points are the template, shifted and scaled 2x, comes back as the
    112x112 template crop: the pixel drawn at each point lands on the template point."""
    image = np.zeros((400, 400, 3), np.uint8)
    points = ARCFACE_TEMPLATE * 2 + 80
    for x, y in points:
        image[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3] = 255
    crop = FivePointAligner().align(image, points)
    assert crop.shape == (112, 112, 3)
    for x, y in ARCFACE_TEMPLATE:
        assert crop[int(round(y)), int(round(x))].min() > 100


def test_flip_tta_in_one_batch_equals_two_forward_passes():
    from models import DEFAULT_WEIGHTS
    from models.embedder import Embedder

    embedder = Embedder(DEFAULT_WEIGHTS)
    assert embedder.card.flip_tta
    crops = [np.random.default_rng(i).integers(0, 255, (112, 112, 3), dtype=np.uint8) for i in range(3)]
    x = torch.from_numpy(embedder.preprocess(crops)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        separate = embedder.model(x).float() + embedder.model(torch.flip(x, dims=[3])).float()
    expected = torch.nn.functional.normalize(separate, dim=1).numpy()
    assert np.allclose(embedder.embed(crops), expected, atol=1e-5)
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_serving_and_training_normalise_every_pixel_value_to_the_same_bits():
    """Serving normalises numpy arrays, training PyTorch tensors: one function, two branches, which
    must agree exactly (a last-bit difference would be a different input from the one trained on)."""
    from models.inputs import hwc_batch, normalise

    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    served = hwc_batch(pixels)
    trained = normalise(torch.from_numpy(pixels).permute(0, 3, 1, 2)).numpy()
    assert served.dtype == np.float32 and served.flags.c_contiguous and served.shape == (1, 3, 16, 16)
    assert np.array_equal(served.view(np.uint32), trained.view(np.uint32))
    assert served.min() == -1.0 and served.max() == 1.0


def test_bf16_embeddings_of_real_faces_stay_close_to_fp32(data):
    """The GPU path runs under bf16 autocast; checked here on the CPU with real aligned faces: each
    face's bf16 vector stays within a small angle of its fp32 vector, far below the gap between a
    match and a non-match (the shipped thresholds are cosines of 0.4-0.8)."""
    import cv2

    from models import DEFAULT_WEIGHTS
    from models.embedder import Embedder

    paths = sorted((data / "recognition" / "train").glob("pins_*/*.jpg"))[::300][:24]
    crops = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    fp32 = Embedder(DEFAULT_WEIGHTS, bf16=False).embed(crops)
    bf16 = Embedder(DEFAULT_WEIGHTS, bf16=True).embed(crops)
    cosines = (fp32 * bf16).sum(1)
    assert len(crops) == 24 and cosines.min() > 0.999, cosines.min()
    same_order = (fp32 @ fp32.T).argsort(1)[:, -2] == (bf16 @ bf16.T).argsort(1)[:, -2]
    assert same_order.mean() >= 0.9  # nearest other face mostly unchanged

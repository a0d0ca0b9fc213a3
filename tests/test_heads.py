import math

import pytest
import torch
import torch.nn.functional as F

from training.heads import (
    AdaFaceMargin,
    ArcFaceMargin,
    CombinedMargin,
    CosFaceMargin,
    ElasticArcMargin,
    MarginHead,
    SoftmaxMargin,
    create_head,
)


def test_softmax_margin_is_scaled_cosine():
    cos = torch.tensor([[0.5, -0.2], [0.1, 0.3]])
    assert torch.allclose(SoftmaxMargin(s=10)(cos, torch.tensor([0, 1])), 10 * cos)


def test_arcface_target_logit_value():
    s, m = 32.0, 0.5
    theta = torch.tensor([0.3, 1.2, 2.0])
    cos = torch.stack([torch.cos(theta), torch.zeros(3)], 1)
    logits = ArcFaceMargin(s, m)(cos, torch.zeros(3, dtype=torch.long))
    assert torch.allclose(logits[:, 0], s * torch.cos(theta + m), atol=1e-5)
    assert torch.allclose(logits[:, 1], torch.zeros(3))  # non-target logits keep s * cos


def test_arcface_is_monotonic_past_pi_minus_m():
    """cos(theta + m) rises again once theta + m > pi; the fallback must keep decreasing."""
    margin = ArcFaceMargin(32.0, 0.5)
    theta = torch.linspace(0.0, math.pi, 2001)
    cos = torch.stack([torch.cos(theta), torch.zeros_like(theta)], 1)
    target = margin(cos, torch.zeros(len(theta), dtype=torch.long))[:, 0]
    assert torch.all(target[1:] <= target[:-1] + 1e-4)


def test_arcface_no_nan_at_the_ends():
    head = create_head("arcface", 4, 3, s=32.0, m=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    emb = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]], requires_grad=True)  # theta = 0 and theta = pi
    loss = head(emb, torch.tensor([0, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


def test_head_loss_value_matches_manual_cross_entropy():
    torch.manual_seed(0)
    head = create_head("arcface", 8, 5, s=16.0, m=0.3)
    emb, labels = torch.randn(6, 8), torch.randint(0, 5, (6,))
    cos = F.normalize(emb) @ F.normalize(head.weight).T
    theta = torch.acos(cos.gather(1, labels[:, None]).clamp(-1, 1))
    logits = cos.scatter(1, labels[:, None], torch.cos(theta + 0.3))
    assert head(emb, labels).item() == pytest.approx(F.cross_entropy(16 * logits, labels).item(), rel=1e-5)


def test_head_gradients_match_finite_differences():
    torch.manual_seed(1)
    head = MarginHead(5, 4, ArcFaceMargin(8.0, 0.4)).double()
    emb = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2, 3])
    # The head computes in float32 internally; check gradients through the double path of the margin.
    margin = ArcFaceMargin(8.0, 0.4)

    def loss_of(e, w):
        cos = (F.normalize(e) @ F.normalize(w).T).clamp(-1, 1)
        return F.cross_entropy(margin(cos, labels), labels)

    assert torch.autograd.gradcheck(loss_of, (emb, head.weight), eps=1e-6, atol=1e-5)


def test_margin_pulls_embedding_towards_its_centre():
    head = create_head("arcface", 2, 2, s=16.0, m=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb = torch.tensor([[0.6, 0.8]], requires_grad=True)
    head(emb, torch.tensor([0])).backward()
    assert emb.grad[0, 0] < 0  # descending the loss increases the class-0 component


def test_unknown_loss_lists_valid_names():
    with pytest.raises(KeyError, match="arcface"):
        create_head("nope", 4, 2)


def test_invalid_arcface_margin_is_refused():
    with pytest.raises(ValueError, match="margin"):
        ArcFaceMargin(32.0, 2.0)


def test_cosface_subtracts_the_margin_from_the_target_only():
    cos = torch.tensor([[0.5, 0.2], [0.1, 0.3]])
    logits = CosFaceMargin(s=10, m=0.35)(cos, torch.tensor([0, 1]))
    assert torch.allclose(logits, 10 * torch.tensor([[0.15, 0.2], [0.1, -0.05]]))


def test_combined_margin_reduces_to_arcface_and_cosface():
    theta = torch.linspace(0.05, 2.5, 50)
    cos = torch.stack([torch.cos(theta), 0.1 * torch.ones(50)], 1)
    labels = torch.zeros(50, dtype=torch.long)
    assert torch.allclose(
        CombinedMargin(32, 1.0, 0.5, 0.0)(cos, labels), ArcFaceMargin(32, 0.5)(cos, labels), atol=1e-4
    )
    assert torch.allclose(
        CombinedMargin(32, 1.0, 0.0, 0.35)(cos, labels), CosFaceMargin(32, 0.35)(cos, labels), atol=1e-4
    )


@pytest.mark.parametrize("m1,m2,m3", [(1.0, 0.5, 0.0), (1.35, 0.0, 0.0), (1.0, 0.3, 0.2), (4.0, 0.0, 0.0)])
def test_combined_margin_is_monotonic_and_finite_everywhere(m1, m2, m3):
    theta = torch.linspace(0.0, math.pi, 3001)
    cos = torch.stack([torch.cos(theta), torch.zeros_like(theta)], 1).requires_grad_()
    logits = CombinedMargin(16.0, m1, m2, m3)(cos, torch.zeros(len(theta), dtype=torch.long))
    target = logits[:, 0]
    assert torch.all(target[1:] <= target[:-1] + 1e-3)
    target.sum().backward()
    assert torch.isfinite(cos.grad).all()


def test_elastic_arc_equals_arcface_in_eval_and_varies_in_training():
    cos = torch.tensor([[0.6, 0.1], [0.2, 0.3]]).repeat(50, 1)
    labels = torch.tensor([0, 1]).repeat(50)
    elastic = ElasticArcMargin(32.0, 0.5, sigma=0.05)
    elastic.eval()
    assert torch.allclose(elastic(cos, labels), ArcFaceMargin(32.0, 0.5)(cos, labels))
    elastic.train()
    torch.manual_seed(0)
    target = elastic(cos, labels).gather(1, labels[:, None])[0::2]
    assert target.std() > 0.1  # the margin differs per sample
    assert abs(target.mean().item() - ArcFaceMargin(32.0, 0.5)(cos, labels)[0, 0].item()) < 1.0


def test_elastic_arc_is_finite_at_the_ends():
    margin = ElasticArcMargin(32.0, 0.5, sigma=0.2).train()
    cos = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    margin(cos, torch.tensor([0, 0])).sum().backward()
    assert torch.isfinite(cos.grad).all()


def test_subcenter_head_takes_the_best_subcentre():
    head = create_head("arcface", 2, 2, subcenters=2, s=16.0, m=0.5)
    with torch.no_grad():  # class 0: sub-centres at 0 and 90 degrees; class 1 at 180 and 270
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    cos = head.cosines(torch.tensor([[0.0, 2.0], [0.0, -3.0]]))
    assert torch.allclose(cos, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    loss = head(torch.tensor([[0.0, 2.0]], requires_grad=True), torch.tensor([0]))
    assert torch.isfinite(loss)


def _adaface_at(q: float, m: float = 0.4) -> AdaFaceMargin:
    """An AdaFace margin in eval mode whose running statistics give norm 10 exactly quality ``q``
    (mean 10, std 1, h 1)."""
    margin = AdaFaceMargin(16.0, m, h=1.0).eval()
    margin.norm_mean.fill_(10.0 - q)
    margin.norm_std.fill_(1.0 - 1e-3)
    return margin


def test_adaface_spans_arcface_cosface_and_the_bonus_margin():
    theta = torch.linspace(0.5, 2.5, 40)  # inside (m, pi - m): no clipping
    cos = torch.stack([torch.cos(theta), 0.1 * torch.ones(40)], 1)
    labels = torch.zeros(40, dtype=torch.long)
    norms = torch.full((40,), 10.0)
    # Poor image (q = -1): ArcFace's angular margin; average (q = 0): CosFace's; good (q = +1): by hand.
    assert torch.allclose(_adaface_at(-1.0)(cos, labels, norms), ArcFaceMargin(16.0, 0.4)(cos, labels), atol=1e-4)
    assert torch.allclose(_adaface_at(0.0)(cos, labels, norms), CosFaceMargin(16.0, 0.4)(cos, labels), atol=1e-4)
    good = _adaface_at(1.0)(cos, labels, norms)
    assert torch.allclose(good[:, 0], 16.0 * (torch.cos(theta - 0.4) - 0.8), atol=1e-4)
    assert torch.allclose(good[:, 1], 16.0 * cos[:, 1])  # other classes untouched


@pytest.mark.parametrize("q", [-1.0, -0.3, 0.0, 0.5, 1.0])
def test_adaface_is_monotonic_and_finite_everywhere(q):
    theta = torch.linspace(0.0, math.pi, 3001)
    cos = torch.stack([torch.cos(theta), torch.zeros_like(theta)], 1).requires_grad_()
    target = _adaface_at(q, m=0.7)(cos, torch.zeros(len(theta), dtype=torch.long), torch.full((3001,), 10.0))[:, 0]
    assert torch.all(target[1:] <= target[:-1] + 1e-3)
    target.sum().backward()
    assert torch.isfinite(cos.grad).all()


def test_adaface_tracks_norm_statistics_in_training_only_and_detaches_norms():
    margin = AdaFaceMargin(32.0, 0.4, momentum=0.5)
    cos = torch.tensor([[0.6, 0.1], [0.2, 0.3]], requires_grad=True)
    norms = torch.tensor([10.0, 30.0], requires_grad=True)
    margin.train()(cos, torch.tensor([0, 1]), norms).sum().backward()
    assert norms.grad is None  # the margin reads quality; it does not train the norm
    assert margin.norm_mean.item() == pytest.approx(0.5 * 20.0 + 0.5 * 20.0)
    assert margin.norm_std.item() == pytest.approx(0.5 * 100.0 + 0.5 * float(torch.tensor([10.0, 30.0]).std()))
    before = margin.norm_mean.clone()
    margin.eval()(cos, torch.tensor([0, 1]), norms)
    assert margin.norm_mean == before


def test_adaface_head_passes_norms_and_bare_margin_call_is_refused():
    head = create_head("adaface", 4, 3, s=16.0, m=0.4)
    emb = torch.randn(5, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1])
    loss = head(emb, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()
    with pytest.raises(ValueError, match="MarginHead.logits"):
        head.margin(head.cosines(emb), labels)
    # A larger norm with the same direction is read as a better image: a larger additive margin.
    head.eval()
    low, high = head.logits(emb[:1] * 0.1, labels[:1]), head.logits(emb[:1] * 100, labels[:1])
    assert high[0, 0] < low[0, 0]

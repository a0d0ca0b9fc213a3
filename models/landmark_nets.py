"""Our 68-point landmark networks, registered by name (``landmark_resnet``, ``landmark_integral``).

The service's side of them (crops, card, runner) is ``models.landmarker``; the modules live here so
that a service on cached ONNX networks never imports PyTorch (``models.runtime``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.backbones import IRBlock
from models.registry import register_model


def _stem(width: int) -> nn.Sequential:
    """The landmark nets' first layer: one strided convolution, so no work is done at full resolution."""
    return nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))


class LandmarkNet(nn.Module):
    """IResNet-style stages down to a 6x6 map, then a linear layer over the flattened map: direct
    regression of 136 numbers. Flattening (not pooling) keeps where each feature is, which is what
    coordinates need."""

    def __init__(
        self,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        input_size: int = 96,
        points: int = 68,
        stride_first: bool = True,
    ) -> None:
        super().__init__()
        self.input_size, self.points = input_size, points
        self.stem = _stem(widths[0])
        blocks, in_ch = [], widths[0]
        for i, width in enumerate(widths):
            blocks += [IRBlock(in_ch, width, stride=2 if i or stride_first else 1), IRBlock(width, width, stride=1)]
            in_ch = width
        self.stages = nn.Sequential(*blocks)
        # The stem halves the input and so does every stage (the first too, unless stride_first is
        # off): at 96 px the full-resolution work is one stem convolution, which keeps a face ~5 ms.
        final = input_size // 2 ** (len(widths) + int(stride_first))
        self.head = nn.Sequential(
            nn.BatchNorm2d(in_ch), nn.Flatten(), nn.Dropout(0.1), nn.Linear(in_ch * final * final, points * 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x))).view(-1, self.points, 2)


@register_model("landmark_resnet")
def landmark_resnet(
    input_size: int = 96, widths: tuple[int, ...] = (32, 64, 128, 256), stride_first: bool = True
) -> LandmarkNet:
    """A 68-point regressor at ``input_size`` px (a multiple of 32)."""
    return LandmarkNet(tuple(widths), input_size, stride_first=stride_first)


class LandmarkIntegralNet(nn.Module):
    """Heatmaps + soft-argmax ("integral regression", Sun et al. 2018): the same IR encoder, a small
    top-down path (FPN-style) back to a stride-4 map, one heatmap per point, and each point taken as
    the heatmap's expected position. Coordinates stay differentiable (trained with the same wing
    loss as the regressor), the map keeps spatial detail that flattening loses, and an answer can
    never leave the crop -- the failure the regressor showed on a few YouTube faces."""

    def __init__(
        self, widths: tuple[int, ...] = (32, 64, 128, 256), input_size: int = 96, points: int = 68, decoder: int = 64
    ) -> None:
        super().__init__()
        self.input_size, self.points = input_size, points
        self.stem = _stem(widths[0])
        stages, in_ch = [], widths[0]
        for width in widths:
            stages.append(nn.Sequential(IRBlock(in_ch, width, stride=2), IRBlock(width, width, stride=1)))
            in_ch = width
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(w, decoder, 1, bias=False) for w in widths)
        self.fuse = nn.Sequential(
            nn.BatchNorm2d(decoder),
            nn.Conv2d(decoder, decoder, 3, 1, 1, bias=False),
            nn.BatchNorm2d(decoder),
            nn.PReLU(decoder),
            nn.Conv2d(decoder, points, 1),
        )
        side = input_size // 4
        # Cell centres of the stride-4 map, in crop units: cell i covers input pixels 4i..4i+3.
        centres = (torch.arange(side, dtype=torch.float32) * 4 + 1.5) / input_size
        self.register_buffer("grid_x", centres.repeat(side), persistent=False)
        self.register_buffer("grid_y", centres.repeat_interleave(side), persistent=False)

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """(n, points, input/4, input/4) logits."""
        feats, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        top = self.lateral[-1](feats[-1])
        for lateral, feat in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            top = nn.functional.interpolate(top, size=feat.shape[-2:], mode="nearest") + lateral(feat)
        return self.fuse(top)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob = self.heatmaps(x).flatten(2).float().softmax(-1)
        return torch.stack([prob @ self.grid_x, prob @ self.grid_y], -1)


@register_model("landmark_integral")
def landmark_integral(
    input_size: int = 96, widths: tuple[int, ...] = (32, 64, 128, 256), decoder: int = 64
) -> LandmarkIntegralNet:
    """A 68-point heatmap + soft-argmax network at ``input_size`` px (a multiple of 32)."""
    return LandmarkIntegralNet(tuple(widths), input_size, decoder=decoder)

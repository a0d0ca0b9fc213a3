"""Face-embedding backbones. A backbone maps an aligned face crop to an (unnormalised) embedding;
heads, margins and normalisation live elsewhere."""

from __future__ import annotations

import torch
import torch.nn as nn

from models.registry import register_model


class IRBlock(nn.Module):
    """Improved residual block of ArcFace's IResNet: BN-conv-BN-PReLU-conv(stride)-BN + shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        if stride == 1 and in_ch == out_ch:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class IResNet(nn.Module):
    """IResNet with a configurable width and depth, sized for small inputs.

    The stem keeps full resolution and every stage halves it, so a 64 px input ends at 4x4 and a
    112 px input at 7x7. The output layer is a global depthwise convolution (as in MobileFaceNet)
    followed by a linear projection: far fewer weights than IResNet's flatten-FC, which keeps the
    committed weight file at a few MB.
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (32, 64, 128, 256),
        embedding_dim: int = 512,
        input_size: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.embedding_dim = embedding_dim
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0])
        )
        blocks: list[nn.Module] = []
        in_ch = widths[0]
        for n_blocks, width in zip(layers, widths):
            for i in range(n_blocks):
                blocks.append(IRBlock(in_ch, width, stride=2 if i == 0 else 1))
                in_ch = width
        self.stages = nn.Sequential(*blocks)
        final = input_size // 2 ** len(layers)
        self.head = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, in_ch, final, groups=in_ch, bias=False),  # global depthwise conv
            nn.BatchNorm2d(in_ch),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_ch, embedding_dim, bias=False),
            nn.BatchNorm1d(embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


@register_model("iresnet18_half")
def iresnet18_half(embedding_dim: int = 512, input_size: int = 64, dropout: float = 0.0) -> IResNet:
    """Half-width IResNet-18: (2, 2, 2, 2) blocks of 32/64/128/256 channels."""
    return IResNet((2, 2, 2, 2), (32, 64, 128, 256), embedding_dim, input_size, dropout)


@register_model("iresnet26_half")
def iresnet26_half(embedding_dim: int = 512, input_size: int = 64, dropout: float = 0.0) -> IResNet:
    """Half-width IResNet-26: (2, 3, 4, 3) blocks of 32/64/128/256 channels (1.28x the half-width
    IResNet-18's time per face at 80 px with flip, ``bench/results/embed_speed.json``)."""
    return IResNet((2, 3, 4, 3), (32, 64, 128, 256), embedding_dim, input_size, dropout)


@register_model("iresnet34_half")
def iresnet34_half(embedding_dim: int = 512, input_size: int = 64, dropout: float = 0.0) -> IResNet:
    """Half-width IResNet-34: (3, 4, 6, 3) blocks of 32/64/128/256 channels (1.50x the half-width
    IResNet-18's time per face at 80 px with flip, ``bench/results/embed_speed.json``)."""
    return IResNet((3, 4, 6, 3), (32, 64, 128, 256), embedding_dim, input_size, dropout)


@register_model("iresnet18")
def iresnet18(embedding_dim: int = 512, input_size: int = 64, dropout: float = 0.0) -> IResNet:
    """Full-width IResNet-18: (2, 2, 2, 2) blocks of 64/128/256/512 channels."""
    return IResNet((2, 2, 2, 2), (64, 128, 256, 512), embedding_dim, input_size, dropout)


@register_model("iresnet_tiny")
def iresnet_tiny(embedding_dim: int = 32, input_size: int = 32, dropout: float = 0.0) -> IResNet:
    """A tiny two-stage net for unit tests and smoke runs."""
    return IResNet((1, 1), (8, 16), embedding_dim, input_size, dropout)

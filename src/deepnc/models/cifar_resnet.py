"""CIFAR-style ResNets (He et al. 2016, section 4.2) for small inputs such as 28x28 or 32x32.

Three stages of ``n`` basic blocks with 16, 32 and 64 channels (depth ``6n + 2``), a 3x3
stem without pooling, global average pooling and a final ``fc`` layer, so that
:func:`deepnc.convert` finds the classifier where torchvision keeps it. The model
follows timm's contract: ``forward_features``, ``forward_head``, ``num_features``,
``get_classifier``.
"""

from __future__ import annotations

import torch
from torch import nn

from deepnc.utils.validate import check_positive_int

__all__ = ["CifarResNet", "resnet20", "resnet32", "resnet56"]


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images.

    Args:
        blocks_per_stage: n (3 gives ResNet-20, 5 ResNet-32, 9 ResNet-56).
        num_classes: C of the final ``fc`` layer.
        in_chans: input channels (1 for greyscale, 3 for RGB).
        widths: channels of the three stages.
    """

    def __init__(
        self,
        blocks_per_stage: int,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: tuple[int, int, int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        check_positive_int("blocks_per_stage", blocks_per_stage)
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_chans", in_chans)
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers, channels = [], widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(channels, width, stride))
                channels = width
        self.layers = nn.Sequential(*layers)
        self.num_features = channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Module = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, num_features, H / 4, W / 4)``."""
        return self.layers(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, num_features, h, w) -> (B, num_classes)`` (or pooled features)."""
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc


def resnet20(**kwargs) -> CifarResNet:
    return CifarResNet(3, **kwargs)


def resnet32(**kwargs) -> CifarResNet:
    return CifarResNet(5, **kwargs)


def resnet56(**kwargs) -> CifarResNet:
    return CifarResNet(9, **kwargs)

"""Image classifiers: a small CNN for 8x8 and 28x28 images, ResNet-18 with the CIFAR stem, Swin-T."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dualoptim.registry import Registry

__all__ = ["MODELS", "ResNet18", "SmallCNN", "SwinT", "build_model"]

MODELS = Registry["type[nn.Module]"]("model")


def build_model(
    name: str, image_shape: tuple[int, int, int], num_classes: int, width: int, weights: str | None = None
) -> nn.Module:
    """Build model ``name`` (see ``MODELS.names()``) for ``image_shape`` = (channels, height, width).

    ``weights`` names pre-trained weights of models that have them (``swin-t``); None = random init.
    """
    cls = MODELS.get(name)
    if weights is None:
        return cls(image_shape=image_shape, num_classes=num_classes, width=width)
    if not getattr(cls, "pretrained", False):
        raise ValueError(f"model {name!r} has no pre-trained weights (got weights={weights!r}); use swin-t")
    return cls(image_shape=image_shape, num_classes=num_classes, width=width, weights=weights)


@MODELS.register("small-cnn")
class SmallCNN(nn.Module):
    """Two conv blocks (conv-BN-ReLU, the second downsampling) and a linear head after global pooling.

    Global average pooling makes the same network fit 8x8 digits and 28x28 Fashion-MNIST. Images of
    16 pixels or more are downsampled by the first convolution (stride 2): on a CPU that makes a
    28x28 network three times faster for about the same accuracy. Batch norm matters for
    unlearning: its running statistics are part of what the model remembers.
    """

    def __init__(
        self, image_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10, width: int = 16
    ) -> None:
        super().__init__()
        in_channels, height, _ = image_shape
        stem_stride = 2 if height >= 16 else 1
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


@MODELS.register("resnet18")
class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool), as in the unlearning papers.

    ``width`` is the number of channels of the first stage (64 in the standard network).
    """

    def __init__(
        self, image_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10, width: int = 64
    ) -> None:
        super().__init__()
        in_channels = image_shape[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        layers, in_planes = [], width
        for stage, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**stage
            layers += [_BasicBlock(in_planes, planes, stride), _BasicBlock(planes, planes, 1)]
            in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.layers(self.stem(x))))


@MODELS.register("swin-t")
class SwinT(nn.Module):
    """torchvision's Swin-T behind a bicubic resize to 224x224, with a new ``num_classes`` head.

    The TinyImageNet setting of the papers' code: 64x64 images (already cropped and flipped) are
    resized to 224 (``transforms.Resize(224, BICUBIC)``), the input size of the ImageNet-1k
    weights. ``weights="DEFAULT"`` (or a torchvision weight name) loads those weights, downloaded
    by torchvision on first use; None builds a randomly initialised network. ``width`` is unused.
    torchvision is imported here, not at module import, because it is an optional extra.
    """

    pretrained = True
    input_size = 224

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (3, 64, 64),
        num_classes: int = 200,
        width: int = 0,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if image_shape[0] != 3:
            raise ValueError(f"swin-t takes RGB images (3 channels), got {image_shape[0]} channels")
        try:
            from torchvision.models import swin_t
        except Exception as error:  # ImportError, or RuntimeError when torchvision mismatches torch
            raise ValueError(
                f"model swin-t needs torchvision (pip install 'dualoptim[vision]'), which cannot be imported: {error}"
            ) from None
        self.body = swin_t(weights=weights)
        self.body.head = nn.Linear(self.body.head.in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bicubic", align_corners=False)
        return self.body(x)

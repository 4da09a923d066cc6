"""Image classifiers: a small CNN for 8x8 and 28x28 images and ResNet-18 with the CIFAR stem."""

from __future__ import annotations

from torch import Tensor, nn

from dualoptim.registry import Registry

__all__ = ["MODELS", "ResNet18", "SmallCNN", "build_model"]

MODELS = Registry["type[nn.Module]"]("model")


def build_model(name: str, image_shape: tuple[int, int, int], num_classes: int, width: int) -> nn.Module:
    """Build model ``name`` (see ``MODELS.names()``) for ``image_shape`` = (channels, height, width)."""
    return MODELS.get(name)(image_shape=image_shape, num_classes=num_classes, width=width)


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

"""Encoders f(.): ResNet-18 adapted to 32x32 images, and a small CNN for machines without a GPU."""
from torch import nn
from torchvision.models import resnet18


def resnet18_cifar() -> nn.Module:
    """ResNet-18 for 32x32 inputs: 3x3 stride-1 stem, no max-pool, no classifier; outputs 512-d h."""
    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.out_dim = 512
    return net


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Sequential):
    """A four-stage CNN (0.39 M parameters) for machines without a GPU; outputs 256-d h."""

    def __init__(self, width: int = 32) -> None:
        w = width
        super().__init__(
            *_conv_bn_relu(3, w), nn.MaxPool2d(2),          # 16x16
            *_conv_bn_relu(w, 2 * w), nn.MaxPool2d(2),      # 8x8
            *_conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2),  # 4x4
            *_conv_bn_relu(4 * w, 8 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out_dim = 8 * w


def build_encoder(name: str) -> nn.Module:
    """The encoder f(.) by name: ``"resnet18"`` (GPU) or ``"small_cnn"`` (CPU). It has an ``out_dim`` attribute."""
    if name == "resnet18":
        return resnet18_cifar()
    if name == "small_cnn":
        return SmallCNN()
    raise ValueError(f"unknown encoder {name!r}: use 'resnet18' or 'small_cnn'")

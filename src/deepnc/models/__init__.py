"""Backbones. For now the CIFAR-style ResNets that the benchmarks and small demos use."""

from deepnc.models.cifar_resnet import CifarResNet, resnet20, resnet32, resnet56

__all__ = ["CifarResNet", "resnet20", "resnet32", "resnet56"]

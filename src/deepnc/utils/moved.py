"""Module paths of deepnc 0.1 that moved in 0.2, kept importable for one release.

``from deepnc.subcentroids import SubCentroidBank`` still works: the first name read from
an old path warns with a ``DeprecationWarning`` that names the new path, and every name is
the very object of the new module (so ``isinstance`` and checkpoints are unaffected), the
way timm kept ``timm.models.layers`` working when it became ``timm.layers``. ``deepnc/__init__.py``
installs the finder; the old paths go in deepnc 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__all__ = ["MOVED", "install_moved_paths"]

MOVED: dict[str, str | tuple[str, ...]] = {  # old module path -> where it lives now
    "deepnc._validate": "deepnc.utils.validate",
    "deepnc._extras": "deepnc.utils.extras",
    "deepnc.progress": "deepnc.utils.progress",
    "deepnc.head": "deepnc.nn.head",
    "deepnc.head_update": "deepnc.nn.head",
    "deepnc.subcentroids": "deepnc.nn.bank",
    "deepnc.bank_seeding": "deepnc.nn.bank",
    "deepnc.bank_diagnostics": "deepnc.nn.diagnostics",
    "deepnc.subcentroid_update": "deepnc.nn.update",
    "deepnc.momentum": "deepnc.nn.momentum",
    "deepnc.sinkhorn": "deepnc.nn.sinkhorn",
    "deepnc.seeding": "deepnc.nn.kmeans",
    "deepnc.memory": "deepnc.nn.memory",
    "deepnc.grouping": "deepnc.nn.grouping",
    "deepnc.counter_random": "deepnc.nn.counter_random",
    "deepnc.distributed": "deepnc.nn.distributed",
    "deepnc.head_checks": "deepnc.nn.input_checks",
    "deepnc.targets": "deepnc.nn.hooks",
    "deepnc.convert": "deepnc.nn.convert",
    "deepnc.warm_start": "deepnc.nn.warm_start",
    "deepnc.reference": "deepnc.testing.reference",
    "deepnc.checkpoint": "deepnc.engine.checkpoint",
    "deepnc.embedding_cache": "deepnc.explain.embedding_cache",
    "deepnc.compare": "deepnc.engine.compare",
    "deepnc.config": "deepnc.engine.config",
    "deepnc.recipes": "deepnc.engine.recipes",
    "deepnc.engine.checkpointing": "deepnc.engine.run_checkpoints",
    "deepnc.engine.setup": "deepnc.engine.runtime",
    "deepnc.engine.segmentation_eval": "deepnc.engine.seg_evaluation",
    "deepnc.engine.plots": "deepnc.plots.run_plots",
    "deepnc.engine.segmentation_plots": "deepnc.plots.seg_plots",
    "deepnc.engine.predict": "deepnc.commands.predict",
    "deepnc.engine.fit": "deepnc.commands.fit",
    "deepnc.engine.class_edits": "deepnc.commands.class_edits",
    "deepnc.engine.checkpoint_eval": "deepnc.commands.evaluate",
    "deepnc.explain.workflow": ("deepnc.commands.snap", "deepnc.commands.explain"),
    "deepnc.explain.dense_workflow": "deepnc.commands.seg_explain",
    "deepnc.explain.explain": "deepnc.explain.evidence",
    "deepnc.explain.dense": "deepnc.explain.seg_maps",
    "deepnc.explain.dense_evidence": "deepnc.explain.seg_evidence",
    "deepnc.data.item_seeds": "deepnc.data.samplers",
    "deepnc.models.segmentation": "deepnc.models.seg_models",
    "deepnc.models.dense_backbones": "deepnc.models.seg_backbones",
}


class _MovedModule(types.ModuleType):
    """A stand-in for an old path: every attribute is read from the new module(s), and the
    first one read warns."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"Moved to {' and '.join(targets)}.")
        self.__targets = targets
        self.__warned = False

    def __getattr__(self, name: str):
        if name.startswith("__") and name != "__all__":  # the import system's probes
            raise AttributeError(name)
        if not self.__warned:
            self.__warned = True
            warnings.warn(
                f"{self.__name__} moved to {' and '.join(self.__targets)} in deepnc 0.2; "
                "import it from there (the old path goes in deepnc 0.3)",
                DeprecationWarning,
                stacklevel=2,
            )
        for target in self.__targets:
            module = importlib.import_module(target)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted({n for t in self.__targets for n in dir(importlib.import_module(t))})


def _targets(old: str) -> tuple[str, ...]:
    targets = MOVED[old]
    return (targets,) if isinstance(targets, str) else targets


class _MovedPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> types.ModuleType:
        return _MovedModule(spec.name, _targets(spec.name))

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install_moved_paths() -> None:
    """Put the finder of the old paths on ``sys.meta_path`` (once; after the real ones,
    so it never shadows a module that exists).

    An old module named like a public attribute of its package (``deepnc.convert``, the
    module, beside ``deepnc.convert``, the function) is registered at once instead:
    imported lazily, it would replace that attribute, as importing a submodule does.
    """
    if any(isinstance(finder, _MovedPathFinder) for finder in sys.meta_path):
        return
    sys.meta_path.append(_MovedPathFinder())
    for old in MOVED:
        parent, _, child = old.rpartition(".")
        package = sys.modules.get(parent)
        public = getattr(package, "__all__", ())  # (hasattr would load a lazy package)
        if child in public and old not in sys.modules:
            sys.modules[old] = _MovedModule(old, _targets(old))

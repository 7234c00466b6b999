"""The module paths of deepnc 0.1 still import for one release: each warns with a
DeprecationWarning that names the new path, and hands out the new module's own objects."""

import importlib
import sys
from pathlib import Path

import pytest

import deepnc
from deepnc.utils.moved import MOVED


def _fresh_import(name: str):
    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    if hasattr(sys.modules[parent], child):
        delattr(sys.modules[parent], child)
    return importlib.import_module(name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_and_gives_the_new_objects(old):
    targets = MOVED[old]
    targets = (targets,) if isinstance(targets, str) else targets
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {targets[0]}"):
        shim = _fresh_import(old)
    for target in targets:
        module = importlib.import_module(target)
        for name in getattr(module, "__all__", ()):
            assert getattr(shim, name) is getattr(module, name), (old, name)


def test_the_documented_imports_of_0_1_work():
    for old in ("deepnc.subcentroids", "deepnc.targets"):
        sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning):
        from deepnc.subcentroids import SubCentroidBank
        from deepnc.targets import training_targets
    assert SubCentroidBank is deepnc.SubCentroidBank
    assert training_targets is deepnc.training_targets
    with pytest.warns(DeprecationWarning):
        distributed = _fresh_import("deepnc.distributed")
    assert distributed.world_size() == 1


def test_an_old_path_names_what_it_lacks():
    with pytest.warns(DeprecationWarning):
        shim = _fresh_import("deepnc.head")
    with pytest.raises(AttributeError, match=r"deepnc\.head.*no_such_name"):
        shim.no_such_name  # noqa: B018


def test_no_old_path_is_a_real_module():
    """The finder never shadows a module that exists."""
    source = Path(deepnc.__file__).parent
    for old in MOVED:
        relative = Path(*old.split(".")[1:])
        assert not relative.with_suffix(".py").exists() and not (source / relative).is_dir()
        assert not (source / relative).with_suffix(".py").exists(), old

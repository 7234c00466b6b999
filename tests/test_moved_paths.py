"""The module paths of deepnc 0.1 still import for one release: each warns with a
DeprecationWarning that names the new path, and hands out the new module's own objects."""

import importlib
import sys
import warnings
from pathlib import Path

import pytest

import deepnc
from deepnc.utils.moved import MOVED


def _fresh(name: str):
    """The stand-in of an old path, as if never read before (it warns on its first read)."""
    module = importlib.import_module(name)
    module._MovedModule__warned = False
    return module


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_once_and_gives_the_new_objects(old):
    targets = MOVED[old]
    targets = (targets,) if isinstance(targets, str) else targets
    modules = [importlib.import_module(target) for target in targets]
    names = [(module, name) for module in modules for name in vars(module) if name[0] != "_"]
    shim = _fresh(old)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {targets[0]}"):
        getattr(shim, names[0][1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        for module, name in names:
            if hasattr(module, "__all__") and name in module.__all__:
                assert getattr(shim, name) is getattr(module, name), (old, name)


def test_the_documented_imports_of_0_1_work():
    _fresh("deepnc.subcentroids")
    with pytest.warns(DeprecationWarning, match="deepnc.subcentroids moved to deepnc.nn.bank"):
        from deepnc.subcentroids import SubCentroidBank
    assert SubCentroidBank is deepnc.SubCentroidBank
    from deepnc import distributed  # 0.1's module, now deepnc.nn.distributed

    distributed._MovedModule__warned = False
    with pytest.warns(DeprecationWarning):
        assert distributed.world_size() == 1


def test_old_module_names_leave_the_public_functions_alone():
    """``deepnc.convert`` was a module and a function in 0.1; the function stays."""
    import deepnc.convert
    import deepnc.sinkhorn
    import deepnc.warm_start

    assert deepnc.convert is sys.modules["deepnc.nn.convert"].convert
    assert callable(deepnc.sinkhorn) and callable(deepnc.warm_start)
    _fresh("deepnc.convert")
    with pytest.warns(DeprecationWarning):
        from deepnc.convert import find_classifier
    assert find_classifier is deepnc.find_classifier


def test_an_old_path_names_what_it_lacks():
    shim = _fresh("deepnc.head")
    with pytest.warns(DeprecationWarning), pytest.raises(AttributeError, match="no_such_name"):
        shim.no_such_name  # noqa: B018


def test_no_old_path_is_a_real_module():
    """The finder never shadows a module that exists."""
    source = Path(deepnc.__file__).parent
    for old in MOVED:
        relative = Path(*old.split(".")[1:])
        assert not (source / relative).with_suffix(".py").exists(), old
        assert not (source / relative).is_dir(), old

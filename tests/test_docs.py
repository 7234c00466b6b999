"""The map of the code (docs/layout.md) is what docs/make_layout.py makes of it: every
module listed exists, and every module is listed."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("make_layout", ROOT / "docs/make_layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_layout_is_generated_from_the_code():
    generator = _generator()
    assert generator.LAYOUT.read_text() == generator.layout(), (
        "docs/layout.md is stale: run python docs/make_layout.py"
    )


def test_every_package_folder_is_mapped():
    folders = {folder for folder, _ in _generator().PARTS}
    packages = {
        str(path.parent.relative_to(ROOT)) for path in (ROOT / "src/deepnc").rglob("__init__.py")
    }
    assert packages <= folders, f"add {sorted(packages - folders)} to PARTS"


def test_no_document_links_a_file_outside_the_repository():
    import re

    for document in [
        ROOT / "README.md",
        ROOT / "RESULTS.md",
        *sorted((ROOT / "docs").glob("*.md")),
    ]:
        for target in re.findall(r"\]\(([^)#]+)", document.read_text()):
            if "://" in target:
                continue
            resolved = (document.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{document.name} links {target}"
            assert resolved.exists(), f"{document.name} links {target}, which does not exist"


def test_the_docs_site_builds_in_strict_mode(tmp_path):
    """mkdocs with mkdocstrings: the guide, the method, the map and the API reference from
    the docstrings; any warning (a broken link, a docstring it cannot read) fails."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "api" / "head" / "index.html").is_file()

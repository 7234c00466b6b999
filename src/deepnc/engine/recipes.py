"""The training recipes that ship inside the package (``deepnc/configs/*.yaml``), found
by name from any folder: ``--config fashion-mnist_resnet20`` as well as a file's path."""

from __future__ import annotations

from pathlib import Path

from deepnc.utils.suggest import did_you_mean

__all__ = ["RECIPES", "find_config", "list_configs"]

RECIPES = Path(__file__).parents[1] / "configs"  # the recipes that ship with the package


def list_configs() -> dict[str, str]:
    """The shipped recipes: ``{name: first line of its description}``."""
    recipes = {}
    for path in sorted(RECIPES.glob("*.yaml")):
        first = path.read_text().splitlines()[0] if path.read_text() else ""
        recipes[path.stem] = first.removeprefix("#").strip()
    return recipes


def find_config(path: str | Path) -> Path:
    """A YAML file: ``path`` itself if it exists, else the shipped recipe of that name
    (``fashion-mnist_resnet20`` or ``fashion-mnist_resnet20.yaml``).

    Raises:
        FileNotFoundError: neither; the message lists the recipes.
    """
    given = Path(path)
    if given.is_file():
        return given
    name = given.name.removesuffix(".yaml")
    shipped = RECIPES / f"{name}.yaml"
    if shipped.is_file() and given.parent in (Path("."), Path("configs")):
        return shipped
    recipes = list(list_configs())
    raise FileNotFoundError(
        f"no config file {str(path)!r} and no shipped recipe {name!r}; the recipes "
        f"(deepnc configs): {recipes}.{did_you_mean(name, recipes)}"
    )

"""A self-contained static HTML report of explanations, readable offline.

Every picture is embedded in the page as a PNG data URI: the report is one
``index.html`` (plus the same pictures as PNG files beside it for reuse), with no
script, no stylesheet and no request to anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deepnc.explain.evidence import Explanation
from deepnc.explain.render import MAP_COLOURS, map_range, overlay

__all__ = ["ReportItem", "png_data_uri", "write_report"]

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
.item { border-top: 1px solid #ccc; padding: 1em 0; display: flex; gap: 1.5em; flex-wrap: wrap; }
figure { margin: 0; text-align: center; font-size: 0.8em; }
img { image-rendering: pixelated; border: 1px solid #ddd; }
.wrong { color: #b00; } .right { color: #070; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { padding: 0.2em 0.6em; }
"""


@dataclass
class ReportItem:
    """One explained input: its name, its pixels, its explanation, and its true class if known."""

    name: str
    pixels: np.ndarray
    explanation: Explanation
    true_label: int | None = None


def png_data_uri(pixels: np.ndarray, size: int = 96) -> str:
    """uint8 pixels ``(H, W)`` or ``(H, W, 3)`` as a ``data:image/png;base64,...`` URI."""
    image = Image.fromarray(pixels)
    scale = max(1, size // max(image.size))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _legend() -> np.ndarray:
    """A ``(12, 160, 3)`` strip of the map colours, least to most."""
    import matplotlib.pyplot as plt

    strip = plt.get_cmap(MAP_COLOURS)(np.linspace(0, 1, 160))[:, :3]
    return (np.repeat(strip[None], 12, axis=0) * 255).astype(np.uint8)


def _figure(uri: str, caption: str) -> str:
    alt = html.escape(re.sub("<[^>]+>", " ", caption))
    return f'<figure><img src="{uri}" alt="{alt}"><figcaption>{caption}</figcaption></figure>'


def write_report(
    out_dir: str | Path,
    items: Sequence[ReportItem],
    training_image: Callable[[int], np.ndarray],
    class_names: Sequence[str],
    *,
    title: str,
    gallery_png: str | Path | None = None,
    skipped: Sequence[str] = (),
    facts: dict[str, str] | None = None,
    training_name: Callable[[int], str] | None = None,
) -> Path:
    """Write ``out_dir/index.html``; return its path.

    Args:
        items: the explained inputs.
        training_image: training index -> pixels, for exemplars and neighbours.
        class_names: C names.
        title: the page title.
        gallery_png: a PNG (from :func:`~deepnc.explain.render.plot_gallery`) to embed.
        skipped: messages about inputs that could not be read (shown, not fatal).
        facts: key-value lines shown under the title (checkpoint, dataset, accuracy...).
        training_name: training index -> its caption (default ``"training image I"``;
            its file, where the training set has files).
    """
    if training_name is None:
        training_name = "training image {}".format
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    escape = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if facts:
        rows = "".join(
            f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts.items()
        )
        parts.append(f"<table>{rows}</table>")
    if skipped:
        listed = "".join(f"<li>{escape(message)}</li>" for message in skipped)
        parts.append(f"<h2>Skipped inputs</h2><ul>{listed}</ul>")
    parts.append("<h2>Predictions</h2>")
    if any(e.map is not None for item in items for e in item.explanation.classes):
        legend = png_data_uri(_legend(), size=0)
        parts.append(
            "<p>Maps: each location's contribution to the cosine between the image and the "
            "sub-centroid (their mean is the cosine), input and exemplar on one scale, "
            f'{MAP_COLOURS}: <img src="{legend}" alt="dark: least, yellow: most"> '
            "dark: least, yellow: most.</p>"
        )
    for item in items:
        explanation = item.explanation
        predicted = class_names[explanation.predicted]
        verdict = ""
        if item.true_label is not None:
            right = item.true_label == explanation.predicted
            verdict = (
                f' <span class="{"right" if right else "wrong"}">'
                f"(true: {escape(class_names[item.true_label])})</span>"
            )
        caption = f"<b>{escape(item.name)}</b><br>predicted <b>{escape(predicted)}</b>{verdict}"
        caption += f"<br>score {explanation.score:.3f}"
        blocks = [_figure(png_data_uri(item.pixels), caption)]
        for evidence in explanation.classes:
            label = escape(class_names[evidence.label])
            text = f"{label}, sub-centroid #{evidence.subcentroid}<br>cos {evidence.score:.3f}"
            low, high = map_range(evidence.map, evidence.exemplar_map)
            if evidence.map is not None:
                shown = overlay(item.pixels, evidence.map, low, high)
                blocks.append(_figure(png_data_uri(shown), f"where it matches<br>{text}"))
            if evidence.exemplar >= 0:
                text += f"<br>{escape(training_name(evidence.exemplar))}"
                exemplar = training_image(evidence.exemplar)
                if evidence.exemplar_map is not None:
                    exemplar = overlay(exemplar, evidence.exemplar_map, low, high)
                    text = f"looks like this part<br>{text}"
                blocks.append(_figure(png_data_uri(exemplar), text))
            else:
                blocks.append(f"<figure><figcaption>{text}<br>(no exemplar)</figcaption></figure>")
        if explanation.neighbours:
            blocks.append(
                "<figure><figcaption><i>nearest training images:</i></figcaption></figure>"
            )
            for neighbour in explanation.neighbours:
                text = (
                    f"{escape(class_names[neighbour.label])}<br>cos {neighbour.similarity:.3f}"
                    f"<br>{escape(training_name(neighbour.index))}"
                )
                blocks.append(_figure(png_data_uri(training_image(neighbour.index), 64), text))
        parts.append(f'<div class="item">{"".join(blocks)}</div>')
    if gallery_png is not None:
        encoded = base64.b64encode(Path(gallery_png).read_bytes()).decode("ascii")
        parts.append("<h2>Sub-centroids of every class, as training images</h2>")
        parts.append(f'<img src="data:image/png;base64,{encoded}" alt="gallery">')
    parts.append("</body></html>")
    page = out / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page

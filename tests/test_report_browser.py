"""The HTML report in a real headless browser (Debian's chromium): no error, every image decodes.

Skips where chromium is not installed (``.ci/run`` installs it). A screenshot of the
report is kept in ``build/test-artifacts/report.png``.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deepnc.explain import ClassEvidence, Explanation, Neighbour
from deepnc.explain.report import ReportItem, write_report

BROWSER = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
]

# Runs before anything else on the page: records every error (scripts, failed resources,
# console.error) and, once loaded, every image that did not decode.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(
  String(e.message || (e.target && e.target.src) || e)), true);
const original = console.error;
console.error = (...args) => { window.__errors.push(args.join(" ")); original(...args); };
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({images: images.length, broken, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""


def sample_report(out: Path) -> Path:
    rng = np.random.default_rng(0)

    def image(index: int) -> np.ndarray:
        return rng.integers(0, 255, (8, 8), dtype=np.uint8)

    evidence = [ClassEvidence(1, 0.9, 2, 0.9, 5, 0.97), ClassEvidence(0, 0.4, 0, 0.4, -1)]
    explanation = Explanation(1, 0.9, evidence, [Neighbour(5, 1, 0.95), Neighbour(7, 0, 0.5)])
    items = [
        ReportItem("first.png", image(0), explanation, 1),
        ReportItem("second", image(1), explanation, 0),
    ]
    gallery = out / "gallery.png"
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(image(2)).save(gallery)
    return write_report(
        out, items, image, ["zero", "one", "two"], title="test report", gallery_png=gallery,
        skipped=["broken.png: cannot read image"], facts={"model": "test"},
    )  # fmt: skip


@pytest.mark.skipif(BROWSER is None, reason="needs chromium (apt-get install chromium)")
def test_report_loads_without_errors_and_every_image_decodes(tmp_path):
    page = sample_report(tmp_path / "report")
    harness = page.with_name("harness.html")
    harness.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = subprocess.run(
        [BROWSER, *FLAGS, "--virtual-time-budget=10000", "--dump-dom", harness.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert found, f"the page did not finish loading: {dom[:500]}"
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == []
    assert probe["broken"] == []
    assert probe["images"] == 1 + 2 * 4  # the gallery; per item: input, exemplar, 2 neighbours
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run(
        [BROWSER, *FLAGS, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 5000

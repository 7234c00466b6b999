"""The HTML report in a real headless browser (Debian's chromium): no error, every image decodes.

Skips where chromium is not installed (``.ci/run`` installs it). A screenshot of the
report is kept in ``build/test-artifacts/report.png``.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSER = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
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


def real_report(tmp_path: Path) -> Path:
    """The report ``deepnc explain`` writes for a small DNC model trained on digits."""
    from deepnc.cli import main
    from deepnc.engine import train
    from deepnc.engine.config import load_config

    run = tmp_path / "run"
    config = load_config(
        None,
        {
            "dataset": "digits",
            "train_subset": 320,
            "epochs": 2,
            "batch_size": 64,
            "out_dir": str(run),
            "progress": False,
        },
    )
    train(config)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "report"
    arguments = ["explain", str(run), "--test-samples", "3", "--neighbours", "2"]
    assert main([*arguments, "--images", str(tmp_path / "broken.png"), "--out", str(out)]) == 0
    return out / "index.html"


@pytest.mark.skipif(BROWSER is None, reason="needs chromium (apt-get install chromium)")
def test_report_loads_without_errors_and_every_image_decodes(tmp_path):
    page = real_report(tmp_path)
    harness = page.with_name("harness.html")
    harness.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = subprocess.run(
        [BROWSER, *FLAGS, "--virtual-time-budget=10000", "--dump-dom", harness.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert found, f"the page did not finish loading: {dom[:500]}"
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == []
    assert probe["broken"] == []
    # The gallery and the maps' legend, then per input: itself, and per top class (3) the
    # input under its similarity map and the exemplar under its own, and 2 neighbours.
    assert probe["images"] == 2 + 3 * (1 + 3 * 2 + 2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run(
        [BROWSER, *FLAGS, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 5000

"""Open a report in a real headless browser and check that it renders and its images load.

Used by ``tests/bench/test_report.py`` and ``scripts/check_report_in_browser.sh``. A copy of the
page gets a small script that, once the page has loaded, writes how many ``<img>`` elements it
has and how many decoded to a non-zero size; Chromium's ``--dump-dom`` prints the resulting DOM.

Run: ``python -m mixerlab.bench.browser_check path/to/report.html``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  const rows = document.querySelectorAll("tbody tr").length;
  const probe = document.createElement("pre");
  probe.id = "browser-check";
  probe.textContent = `BROWSER-CHECK images=${images.length} loaded=${loaded} rows=${rows}`;
  document.body.appendChild(probe);
});
</script>"""
RESULT = re.compile(r"BROWSER-CHECK images=(\d+) loaded=(\d+) rows=(\d+)")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary (``$CHROMIUM`` first), or None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit and Path(explicit).exists():
        return explicit
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def check_report(html_path: str | os.PathLike, *, chromium: str | None = None, timeout: float = 120) -> dict:
    """Load ``html_path`` headless; returns ``{"images", "loaded", "rows", "screenshot"}``."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium binary found (apt-get install -y chromium, or set $CHROMIUM)")
    page = Path(html_path).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / "probed.html"
        probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={Path(tmp) / 'profile'}",
            "--virtual-time-budget=10000",
        ]
        dom = subprocess.run(
            [chromium, *flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=timeout
        )
        match = RESULT.search(dom.stdout)
        if match is None:
            raise RuntimeError(f"the page did not finish loading in {chromium}:\n{dom.stderr[-2000:]}")
        shot = Path(html_path).with_suffix(".screenshot.png")
        subprocess.run(
            [chromium, *flags, "--window-size=1280,2400", f"--screenshot={shot}", probed.as_uri()],
            capture_output=True,
            timeout=timeout,
        )
    images, loaded, rows = map(int, match.groups())
    return {
        "images": images,
        "loaded": loaded,
        "rows": rows,
        "screenshot": str(shot) if shot.exists() else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mixerlab.bench.browser_check REPORT.html", file=sys.stderr)
        return 2
    result = check_report(args[0])
    ok = result["images"] > 0 and result["loaded"] == result["images"] and result["rows"] > 0
    print(
        f"{'OK' if ok else 'FAILED'}: {result['loaded']}/{result['images']} images loaded, "
        f"{result['rows']} table rows; screenshot: {result['screenshot']}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

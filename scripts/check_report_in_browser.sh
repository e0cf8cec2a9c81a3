#!/usr/bin/env bash
# Check a mixerlab report in a real headless browser: the page renders, every image loads.
#
#   scripts/check_report_in_browser.sh [REPORT.html]
#
# Without an argument, runs a tiny sweep (`mixerlab compare --tiny`) into a temporary folder first.
# Needs Chromium: `apt-get update && apt-get install -y chromium` (or set $CHROMIUM to a binary).
# Prints "OK: N/N images loaded, R table rows" and writes REPORT.screenshot.png next to the page.
set -euo pipefail
PYTHON="${PYTHON:-python}"
report="${1:-}"
if [[ -z "$report" ]]; then
  out="$(mktemp -d)"
  mixerlab compare --tiny --out "$out" --workers 1
  report="$out/report/report.html"
fi
exec "$PYTHON" -m mixerlab.bench.browser_check "$report"

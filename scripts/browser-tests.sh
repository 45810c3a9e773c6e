#!/usr/bin/env bash
# The dashboard's browser tests: headless Chromium (Debian's `chromium`)
# driven by Playwright for Python, against `bedrock-meter dashboard` reading
# DynamoDB Local seeded from events/. Screenshots: target/dashboard-screenshots/.
#
#   scripts/browser-tests.sh [unittest args, e.g. -k refresh]
#
# Needs: /usr/bin/chromium (apt-get install chromium; or set CHROMIUM) and the
# Python package playwright (pip install -r tests/browser/requirements.txt).
# Never `playwright install`: it downloads browsers from a CDN.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "browser-tests: no Chromium at $CHROMIUM: apt-get install chromium (or set CHROMIUM)" >&2
  exit 1
fi
if ! python3 -c 'import playwright.sync_api' 2>/dev/null; then
  echo "browser-tests: the Python package playwright is missing: pip install -r tests/browser/requirements.txt (never 'playwright install')" >&2
  exit 1
fi
export CHROMIUM

# The network namespace below is offline: build first.
cargo build -p bedrock-meter-cli
mkdir -p "${CARGO_TARGET_DIR:-$ROOT/target}/dashboard-screenshots"
exec scripts/with-dynamodb-local.sh python3 -m unittest -v tests/browser/test_dashboard.py "$@"

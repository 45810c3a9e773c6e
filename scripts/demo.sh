#!/usr/bin/env bash
# The main job, locally: create the table in DynamoDB Local, replay the sample
# events through the ingest path, replay them again (nothing is counted
# twice), and print the totals. Run it through `make demo`, which starts
# DynamoDB Local (scripts/with-dynamodb-local.sh) and builds the CLI first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BM="${BEDROCK_METER:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/bedrock-meter}"
cd "$ROOT"

echo "== bedrock-meter init (DynamoDB Local at $AWS_ENDPOINT_URL)"
"$BM" init
echo
echo "== bedrock-meter replay events/"
"$BM" replay events/
echo
echo "== the same files again: every record is already counted"
"$BM" replay events/ 2>/dev/null
echo
for day in 2026-11-18 2026-11-20; do
  echo "== every user on $day, biggest spender first, with the organisation's total"
  "$BM" report --day "$day"
  echo
done
echo "== every user's total for 2026-11"
"$BM" report --month 2026-11
echo
echo "== alice, per model and per day, 2026-11-18 .. 2026-11-22"
"$BM" report --user alice --from 2026-11-18 --to 2026-11-22

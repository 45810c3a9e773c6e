#!/usr/bin/env bash
# Measures DynamoDB write units per record of the ingest path (issue 16),
# before (a per-record marker item each: `write-cost --scheme record`) and
# after (marker buckets: the default), on fresh tables of DynamoDB Local:
#
#   (a) realistic: one delivery of 500 records (50 users, 5 models, 2 days);
#   (b) sparse: 3,000 records in 60-record deliveries over 500 users,
#       5 models and 30 days;
#   (c) dense: 100 records/s for --seconds (default 600) seconds, one
#       delivery per second (50 users, 5 models), direct (each delivery one
#       ingest) and through the Kinesis path with 60 deliveries per batch.
#
# usage: scripts/with-dynamodb-local.sh scripts/measure-write-cost.sh
#            [--seconds N] [--json FILE] [--keep DIR]
#
# Must run inside scripts/with-dynamodb-local.sh (it needs DynamoDB Local;
# the namespace has no network, so build first:
# `cargo build -p integration-tests --bin write-cost`). --json FILE writes
# every run's figures (the tool's JSON rows); --keep DIR keeps the corpora.
# Units are computed from the items written (see tests/src/bin/write-cost.rs):
# DynamoDB Local's ConsumedCapacity is one flat figure per transaction.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USAGE="usage: scripts/with-dynamodb-local.sh scripts/measure-write-cost.sh [--seconds N] [--json FILE] [--keep DIR]"
DENSE_SECONDS=600
JSON_OUT=""
KEEP=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --seconds) DENSE_SECONDS="${2:?--seconds takes a number}"; shift 2 ;;
    --json) JSON_OUT="${2:?--json takes a file}"; shift 2 ;;
    --keep) KEEP="${2:?--keep takes a directory}"; shift 2 ;;
    -h|--help) echo "$USAGE"; exit 0 ;;
    *) echo "measure-write-cost: unknown argument \`$1\`" >&2; echo "$USAGE" >&2; exit 64 ;;
  esac
done
case "$DENSE_SECONDS" in ''|*[!0-9]*) echo "measure-write-cost: --seconds takes a whole number" >&2; exit 64 ;; esac

if [ -z "${DDB_LOCAL_PID:-}" ] || [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  echo "measure-write-cost: DynamoDB Local is not running: run it inside scripts/with-dynamodb-local.sh" >&2
  echo "$USAGE" >&2
  exit 64
fi
BIN="${WRITE_COST_BIN:-$ROOT/target/debug/write-cost}"
if [ ! -x "$BIN" ]; then
  echo "measure-write-cost: $BIN is missing: build it first with \`cargo build -p integration-tests --bin write-cost\`" >&2
  exit 1
fi

if [ -n "$KEEP" ]; then
  WORK="$KEEP"; mkdir -p "$WORK"
else
  WORK="$(mktemp -d -t write-cost.XXXXXX)"
  trap 'rm -rf "$WORK"' EXIT
fi
GEN="$ROOT/scripts/gen-corpus.py"
A="$WORK/a-realistic"; B="$WORK/b-sparse"; C="$WORK/c-dense"
rm -rf "$A" "$B" "$C"
echo "measure-write-cost: writing the corpora into $WORK" >&2
python3 "$GEN" "$A" --records 500
python3 "$GEN" "$B" --records 3000 --per-file 60 --users 500 --models 5 --days 30
python3 "$GEN" "$C" --rate 100 --seconds "$DENSE_SECONDS" --users 50 --models 5

ROWS="$WORK/rows.jsonl"
: >"$ROWS"
for scheme in record bucket; do
  echo "measure-write-cost: --scheme $scheme, direct: (a) (b) (c)" >&2
  "$BIN" --json --scheme "$scheme" "$A" "$B" "$C" >>"$ROWS"
  echo "measure-write-cost: --scheme $scheme, (c) through Kinesis, 60 deliveries per batch" >&2
  "$BIN" --json --scheme "$scheme" --kinesis-window 60 "$C" >>"$ROWS"
done
if [ -n "$JSON_OUT" ]; then cp "$ROWS" "$JSON_OUT"; fi

python3 - "$ROWS" "$DENSE_SECONDS" <<'EOF'
import json, os, sys
rows = [r for line in open(sys.argv[1]) if line.strip() for r in json.loads(line)]
names = {"a-realistic": "(a) realistic 500", "b-sparse": "(b) sparse 60/delivery",
         "c-dense": f"(c) dense 100/s x {sys.argv[2]} s"}
def name(r):
    return names.get(os.path.basename(r["input"]), r["input"])
print()
hdr = ("workload", "path", "scheme", "records", "tx", "items", "markers", "b.adds", "b.touch",
       "aggs", "replans", "cancel tx/items", "reads", "units", "units/rec", "gsi1/rec", "secs")
fmt = "{:<24} {:<10} {:<6} {:>7} {:>6} {:>7} {:>7} {:>6} {:>7} {:>7} {:>7} {:>15} {:>5} {:>8} {:>9} {:>8} {:>6}"
print(fmt.format(*hdr))
for r in rows:
    print(fmt.format(name(r), r["path"], r["scheme"], r["records_counted"], r["transactions"],
                     r["items"], r["marker_puts"], r["bucket_adds"], r["bucket_touches"],
                     r["aggregates"], r["replans"], f'{r["cancelled_tx"]}/{r["cancelled_items"]}',
                     r.get("bucket_reads", 0), r["total_units"], f'{r["units_per_record"]:.3f}',
                     f'{r["gsi1_writes_per_record"]:.3f}', f'{r["seconds"]:.0f}'))
print()
print("units: transactional write units computed from the items written (2 per started KB of")
print("each item; an update: the larger of the item before and after), plus the items of")
print("cancelled transactions at 2 units each (an upper bound); gsi1/rec: index write units")
print("per record, not included in units; reads: strongly consistent reads of marker buckets")
print("this process filled (one read unit each), not included in units.")
print()
before = {(name(r), r["path"]): r for r in rows if r["scheme"] == "record"}
print("{:<24} {:<10} {:>16} {:>16}".format("workload", "path", "before units/rec", "after units/rec"))
for r in rows:
    if r["scheme"] != "bucket":
        continue
    b = before.get((name(r), r["path"]))
    print("{:<24} {:<10} {:>16} {:>16}".format(name(r), r["path"],
          f'{b["units_per_record"]:.3f}' if b else "-", f'{r["units_per_record"]:.3f}'))
EOF

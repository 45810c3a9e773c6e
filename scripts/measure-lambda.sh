#!/usr/bin/env bash
# Measures the release Lambda binary under the runtime emulator (cargo lambda
# watch --only-lambda-apis, 127.0.0.1): init time (process start to the first
# event answered, a control message), and peak RSS after a ~1 MB compressed
# payload (the largest CloudWatch Logs sends). Run inside DynamoDB Local:
#
#   scripts/with-dynamodb-local.sh scripts/measure-lambda.sh [BOOTSTRAP]
#
# BOOTSTRAP defaults to target/lambda/ingest/bootstrap (`cargo lambda build
# --release --bin ingest`, or infra/check.sh --sam-build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${1:-target/lambda/ingest/bootstrap}"
[ -x "$BIN" ] || { echo "measure-lambda: $BIN missing: cargo lambda build --release --bin ingest" >&2; exit 1; }
PORT=9321
WORK="$(mktemp -d)"
trap 'kill $FN $EMU 2>/dev/null || true; rm -rf "$WORK"' EXIT
export USAGE_TABLE=measure-lambda
target/debug/bedrock-meter init >/dev/null 2>&1 || "$ROOT/target/release/bedrock-meter" init >/dev/null

python3 - "$WORK/big.json" <<'PY'
import base64, gzip, json, random, sys
rng = random.Random(7)
words = "the quarterly report shows revenue growth in every region please summarise tables with numbers and dates".split()
def text(n):
    return " ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(n // 6))
events, size, i = [], 0, 0
while True:
    rec = {"schemaType": "ModelInvocationLog", "timestamp": "2026-11-20T10:00:00Z", "requestId": f"big-{i}",
           "modelId": "amazon.nova-pro-v1:0", "region": "us-east-1",
           "identity": {"arn": "arn:aws:sts::111111111111:assumed-role/R/alice"},
           "input": {"inputTokenCount": 1000, "inputBodyJson": {"messages": [{"content": [{"text": text(20000)}]}]}},
           "output": {"outputTokenCount": 500, "outputBodyJson": {"output": {"message": {"content": [{"text": text(20000)}]}}}}}
    events.append({"id": f"{i:056d}", "timestamp": 1793000000000, "message": json.dumps(rec)})
    i += 1
    payload = json.dumps({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g", "logStream": "s", "logEvents": events}).encode()
    data = base64.b64encode(gzip.compress(payload, 6))
    if len(data) > 1_000_000:
        break
    out = (data, len(payload), i)
json.dump({"awslogs": {"data": out[0].decode()}}, open(sys.argv[1], "w"))
print(f"payload: {out[2]} records, {len(out[0])} bytes base64 gzip, {out[1]} bytes decompressed", file=sys.stderr)
PY

cargo lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$PORT" >/dev/null 2>&1 &
EMU=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
start=$(date +%s%N)
AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$PORT/.rt" AWS_LAMBDA_FUNCTION_NAME=_ AWS_LAMBDA_FUNCTION_VERSION=1 \
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_LOG_FORMAT=JSON "$BIN" >"$WORK/fn.log" 2>&1 &
FN=$!
cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$PORT" --data-file events/control-message.json >/dev/null
first=$(( ($(date +%s%N) - start) / 1000000 ))
t0=$(date +%s%N)
cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$PORT" --data-file events/control-message.json >/dev/null
warm=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "binary: $BIN, $(stat -c %s "$BIN") bytes"
echo "first event answered ${first} ms after process start; a warm invoke of the same event takes ${warm} ms; init ~ $(( first - warm )) ms"
rss0=$(awk '/VmHWM/ {print $2}' /proc/$FN/status)
t0=$(date +%s%N)
cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$PORT" --data-file "$WORK/big.json" | head -c 300; echo
t1=$(( ($(date +%s%N) - t0) / 1000000 ))
rss1=$(awk '/VmHWM/ {print $2}' /proc/$FN/status)
echo "peak RSS: ${rss0} KiB after init, ${rss1} KiB after the 1 MB payload (invoke round trip ${t1} ms)"

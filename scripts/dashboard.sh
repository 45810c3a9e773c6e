#!/usr/bin/env bash
# `make dashboard`: the dashboard on the demo data, at http://127.0.0.1:8080/
# (PORT=... to change) until Ctrl-C.
#
# DynamoDB Local listens on every interface, so it only ever runs inside a
# private network namespace (scripts/with-dynamodb-local.sh), whose
# 127.0.0.1 nobody outside can reach. Inside it: create the table, replay
# events/, and serve the dashboard on a Unix socket (a file, which both sides
# of the namespace can open). Outside: a small forwarder on 127.0.0.1:PORT
# (loopback only) passes each connection to that socket. Nothing listens on
# a non-loopback address.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BM="${BEDROCK_METER:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/bedrock-meter}"
cd "$ROOT"

if [ "${1:-}" = "--inside" ]; then
  # In the namespace, next to DynamoDB Local.
  sock="$2"
  "$BM" init >/dev/null
  "$BM" replay events/ >/dev/null 2>&1
  echo "dashboard: demo data loaded (events/), table \`${USAGE_TABLE:-bedrock-usage}\`" >&2
  exec "$BM" dashboard --listen "unix:$sock"
fi

PORT="${PORT:-8080}"
command -v python3 >/dev/null || { echo "dashboard: python3 is required for the loopback forwarder" >&2; exit 1; }
dir="$(mktemp -d -t bedrock-meter-dashboard.XXXXXX)"
sock="$dir/dashboard.sock"
scripts/with-dynamodb-local.sh "$0" --inside "$sock" &
inner=$!
cleanup() { kill "$inner" 2>/dev/null || true; wait "$inner" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
trap 'exit 0' INT TERM

for _ in $(seq 1 600); do
  [ -S "$sock" ] && break
  kill -0 "$inner" 2>/dev/null || { echo "dashboard: the server inside the namespace stopped" >&2; exit 1; }
  sleep 0.1
done
[ -S "$sock" ] || { echo "dashboard: the server did not start in 60 s" >&2; exit 1; }

echo "dashboard: open http://127.0.0.1:$PORT/ (Ctrl-C stops it)"
python3 - "$PORT" "$sock" <<'PY'
# Loopback TCP -> Unix socket forwarder, one task pair per connection.
import asyncio, sys

port, sock = int(sys.argv[1]), sys.argv[2]

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()

async def handle(client_r, client_w):
    try:
        server_r, server_w = await asyncio.open_unix_connection(sock)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()

try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
PY

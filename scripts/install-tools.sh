#!/usr/bin/env bash
# Installs the tools the tests, the template checks and the demo need, from
# the package registries only (Debian, PyPI, npm). The one place that installs:
# .ci/run, scripts/test.sh and infra/check.sh all call it. Safe to run again:
# each group checks what is there first and installs only what is missing.
#
#   scripts/install-tools.sh            every group
#   scripts/install-tools.sh GROUP...   some of them:
#     system   Java 17, Node.js and npm, unshare, ip, make (apt-get, as root)
#     browser  Debian's chromium and chromium-driver (headless browser tests;
#              never a browser downloaded by a test tool)
#     python   pinned PyPI tools: cargo-lambda, aws-sam-cli, cfn-lint, moto,
#              pyyaml, playwright (the Python package only)
#     cdk      infra/cdk's npm packages (npm ci, when the lock file changed)
#
# Needs network access to the registries the first time; after that it is a
# series of checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { echo "install-tools: $*"; }

# Scripts that pip installs must be found: pyenv needs a rehash, and a --user
# install (pip's fallback when site-packages is not writable) goes to the user base.
refresh_path() {
  hash -r
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
}

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing $*, and there is no apt-get here: install them with your package manager" >&2
    return 1
  fi
  if [ "$(id -u)" != 0 ]; then
    say "missing $*: run as root, or: sudo apt-get install $*" >&2
    return 1
  fi
  if ((apt_updated == 0)); then
    apt-get update -qq
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

group_system() {
  local need=()
  command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
  command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
  command -v unshare >/dev/null 2>&1 || need+=(util-linux)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v make >/dev/null 2>&1 || need+=(make)
  if ((${#need[@]})); then apt_install "${need[@]}"; else say "system tools present"; fi
}

group_browser() {
  local need=()
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
  # Fonts for legible screenshots (Debian's chromium recommends them).
  [ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
  if ((${#need[@]})); then apt_install "${need[@]}"; else say "chromium present"; fi
  /usr/bin/chromium --version
}

group_python() {
  local reqs=(-r infra/requirements-build.txt -r infra/requirements-check.txt -r tests/requirements.txt)
  [ -f tests/browser/requirements.txt ] && reqs+=(-r tests/browser/requirements.txt)
  python3 -m pip install --quiet --disable-pip-version-check "${reqs[@]}" pyyaml
  refresh_path
  local user_bin
  user_bin="$(python3 -m site --user-base 2>/dev/null || true)/bin"
  for tool in cargo-lambda sam cfn-lint moto_server; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "$user_bin/$tool" ] ||
      { say "$tool is still missing after pip install" >&2; return 1; }
  done
  say "python tools present"
}

group_cdk() {
  command -v npm >/dev/null 2>&1 || { say "npm is required (Node.js 20 or later): scripts/install-tools.sh system" >&2; return 1; }
  local cdk=infra/cdk
  # npm writes node_modules/.package-lock.json on install: reinstall when it is
  # missing or older than the committed lock file.
  if [[ ! -f "$cdk/node_modules/.package-lock.json" || "$cdk/package-lock.json" -nt "$cdk/node_modules/.package-lock.json" ]]; then
    (cd "$cdk" && npm ci --no-audit --no-fund)
  else
    say "infra/cdk/node_modules is up to date with package-lock.json"
  fi
}

groups=("$@")
((${#groups[@]})) || groups=(system browser python cdk)
for g in "${groups[@]}"; do
  case "$g" in
    system | browser | python | cdk) "group_$g" ;;
    *) say "unknown group \`$g\` (system, browser, python, cdk)" >&2; exit 2 ;;
  esac
done

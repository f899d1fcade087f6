#!/usr/bin/env bash
# Installs the Debian packages eflambe needs (as root), or says exactly
# which are missing. `deps.sh test` adds what the test suite needs.
set -euo pipefail

packages=(erlang-nox erlang-dev rebar3 libck-dev libzstd-dev zlib1g-dev gcc make)
if [ "${1:-}" = test ]; then
    packages+=(erlang-common-test erlang-eunit erlang-proper clang libclang-rt-dev chromium elixir
               linux-perf hotspot golang-go)
    # Node.js may come from elsewhere than Debian: only ask for it when missing.
    command -v node >/dev/null 2>&1 || packages+=(nodejs)
    command -v npm >/dev/null 2>&1 || packages+=(npm)
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "eflambe is set up with Debian packages: ${packages[*]}." >&2
    echo "This system has no dpkg: install the equivalents (Erlang/OTP 25 with headers," >&2
    echo "rebar3, Concurrency Kit, zstd, zlib, a C compiler, make) by hand." >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "eflambe needs these Debian packages: ${missing[*]}" >&2
    echo "Install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "Installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

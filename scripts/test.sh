#!/usr/bin/env bash
# Runs every test: C unit tests (plain, then under AddressSanitizer and
# UBSan) and the Erlang suites (Common Test, with PropEr properties).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh test
rebar3 compile
make -C c_src test
make -C c_src test-asan
rebar3 ct
echo "All tests passed."

#!/usr/bin/env bash
# Runs every test: xref and dialyzer on the Erlang code, the C unit tests
# (plain, then under AddressSanitizer and UBSan, and the threaded archive
# reader under ThreadSanitizer), bounded runs of the archive reader's and
# the BEAM reader's fuzzers, and the Erlang suites (Common Test, with PropEr properties), whose
# output formats are checked in speedscope's importer and headless Chromium
# (test/browser, installed from the npm registry).
#   EFLAMBE_BLESS=1  regenerate the archive corpus and its folded outputs
#                    (test/data/archives) first, on purpose
#   FUZZ_SECONDS=N   fuzz for N seconds (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh test
rebar3 compile
rebar3 xref
rebar3 dialyzer
if [ "${EFLAMBE_BLESS:-}" = 1 ]; then
    make -C c_src corpus
fi
make -C c_src test
make -C c_src test-asan
make -C c_src test-tsan
make -C c_src fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
(cd test/browser && npm ci --no-audit --no-fund --loglevel=error)
rebar3 ct
echo "All tests passed."

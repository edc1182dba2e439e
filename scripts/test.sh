#!/usr/bin/env bash
# test.sh - build libsmtpd and run every test (Check suites, transcripts,
# interop with real clients). README's second command.
#   scripts/test.sh              normal build in build/
#   scripts/test.sh --sanitize   ASan+UBSan build in build-san/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test

dir=build; extra=()
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-san; extra=(-DSMTPD_SANITIZE=ON)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${extra[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j2

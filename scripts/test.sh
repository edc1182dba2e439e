#!/usr/bin/env bash
# test.sh - build libsmtpd and run every test (Check suites, transcripts,
# interop with real clients). README's second command.
#   scripts/test.sh              normal build in build/
#   scripts/test.sh --sanitize   ASan+UBSan build in build-san/
#   scripts/test.sh --clang      clang build in build-clang/ (the same
#                                -Wall -Wextra -Werror), same tests
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build; extra=(); deps=(test)
case "${1:-}" in
  --sanitize)
    dir=build-san; extra=(-DSMTPD_SANITIZE=ON)
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ;;
  --clang)
    dir=build-clang; deps+=(clang)
    export CC=clang ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--sanitize|--clang]" >&2; exit 2 ;;
esac
scripts/deps.sh "${deps[@]}"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${extra[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j2

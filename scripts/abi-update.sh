#!/usr/bin/env bash
# abi-update.sh - regenerate the ABI files in abi/ that the `abi` test
# (tests/abi/check_abi.sh) compares against.
#
#   scripts/abi-update.sh              abi/<library>.symbols for every shared
#                                      library the build makes: the sorted
#                                      names `nm -D --defined-only` shows.
#                                      Run it after adding or removing a
#                                      public function, review `git diff
#                                      abi/`, commit the lists with the change.
#   scripts/abi-update.sh --baseline   also abi/<library>-<major>.<minor>.abi
#                                      (abidw, Debian abigail-tools): the ABI
#                                      of a release, stored when cutting it,
#                                      from the release commit. Later
#                                      versions are compared with it (abidiff).
#
# Builds in build-abi/ (RelWithDebInfo, without tests and examples; the ABI
# XML needs the debug information). Set BUILD_DIR to use another directory.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=0
case "${1:-}" in
  --baseline) baseline=1 ;;
  "") ;;
  *) echo "usage: scripts/abi-update.sh [--baseline]" >&2; exit 2 ;;
esac
dir=${BUILD_DIR:-build-abi}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSMTPD_BUILD_TESTS=OFF \
  -DSMTPD_BUILD_EXAMPLES=OFF -DSMTPD_BUILD_BENCH=OFF >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$dir/CMakeCache.txt")
mm=$(echo "$version" | cut -d. -f1,2)
mkdir -p abi
built=()
while IFS= read -r so; do
  [ -n "$so" ] || continue
  name=$(basename "$so"); name=${name%%.so*}
  built+=("$name")
  nm -D --defined-only "$so" | awk '{print $3}' | LC_ALL=C sort -u >"abi/$name.symbols"
  echo "abi/$name.symbols: $(wc -l <"abi/$name.symbols") symbols"
  if [ "$baseline" = 1 ]; then
    command -v abidw >/dev/null || { echo "abidw missing (apt-get install abigail-tools)" >&2; exit 1; }
    abidw --no-corpus-path --no-comp-dir-path --short-locs --type-id-style hash \
      --headers-dir include/smtpd --drop-private-types \
      --out-file "abi/$name-$mm.abi" "$so"
    echo "abi/$name-$mm.abi: ABI of $version"
  fi
done <"$dir/smtpd-libraries.txt"
for list in abi/*.symbols; do
  name=$(basename "$list" .symbols)
  case " ${built[*]} " in
    *" $name "*) ;;
    *) echo "note: $list: library not built here (disabled, or its dependency missing); left as it is" ;;
  esac
done

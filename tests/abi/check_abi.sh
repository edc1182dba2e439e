#!/usr/bin/env bash
# check_abi.sh BUILD_DIR SRC_DIR VERSION - the ABI check (ctest: abi).
#
# 1. Symbol lists: for every shared library this build made (listed in
#    BUILD_DIR/smtpd-libraries.txt by cmake/SmtpdPackaging.cmake), its
#    exported symbols (`nm -D --defined-only`, sorted) must equal
#    SRC_DIR/abi/<library>.symbols: a symbol that appears or disappears
#    without the list changing fails. A list whose library is not built in
#    this configuration (adapter disabled or its dependency missing) is
#    skipped. Regenerate the lists with scripts/abi-update.sh.
# 2. abidiff (Debian: abigail-tools), when installed: each library against
#    the stored ABI of the newest release at or before VERSION,
#    SRC_DIR/abi/<library>-<major>.<minor>.abi (abidw output; 0.2 is the
#    first stored). Within the same major.minor (a patch release) an
#    incompatible change (a removed function or variable, a changed
#    signature or type layout in use) fails: that is the promise of
#    find_package(smtpd X.Y) (SameMinorVersion). A later minor of 0.x may
#    break the ABI; its report is printed for the changelog and passes.
set -euo pipefail
build=$1 src=$2 version=$3
manifest=$build/smtpd-libraries.txt
passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
symbols() { nm -D --defined-only "$1" | awk '{print $3}' | LC_ALL=C sort -u; }
# libsmtpd-gnutls.so.0.2.0 -> libsmtpd-gnutls
libname() { local b; b=$(basename "$1"); echo "${b%%.so*}"; }
indent() { printf '%s\n' "$1" | sed 's/^/    /'; }

[ -f "$manifest" ] || { echo "FAIL: no $manifest (configure with CMake first)"; exit 1; }
built=()
while IFS= read -r so; do
  [ -n "$so" ] || continue
  name=$(libname "$so")
  built+=("$name")
  list=$src/abi/$name.symbols
  if [ ! -f "$so" ]; then
    fail "$name: $so not built"
  elif [ ! -f "$list" ]; then
    fail "$name: no abi/$name.symbols (a new library?): run scripts/abi-update.sh and commit the list"
  elif d=$(diff <(LC_ALL=C sort -u "$list") <(symbols "$so")); then
    ok "$name: $(wc -l <"$list") exported symbols as in abi/$name.symbols"
  else
    fail "$name: exported symbols differ from abi/$name.symbols ('>' new, '<' gone):"
    echo "$d" | grep '^[<>]' | sed 's/^/    /'
    echo "    if intended: scripts/abi-update.sh, and commit abi/$name.symbols"
  fi
done <"$manifest"
for list in "$src"/abi/*.symbols; do
  [ -e "$list" ] || continue
  name=$(basename "$list" .symbols)
  case " ${built[*]} " in
    *" $name "*) ;;
    *) echo "skip: $name not built in this configuration" ;;
  esac
done

# ---- abidiff against the last release --------------------------------------
if ! command -v abidiff >/dev/null 2>&1; then
  echo "skip: abidiff not installed (Debian: abigail-tools); symbol lists only"
else
  cur_mm=$(echo "$version" | cut -d. -f1,2)
  while IFS= read -r so; do
    if [ -z "$so" ] || [ ! -f "$so" ]; then continue; fi
    name=$(libname "$so")
    # newest baseline at or before this version
    base="" base_mm=""
    for f in "$src"/abi/"$name"-[0-9]*.abi; do
      [ -e "$f" ] || continue
      mm=${f##*/"$name"-}; mm=${mm%.abi}
      if [ "$(printf '%s\n%s\n' "$mm" "$cur_mm" | sort -V | tail -1)" = "$cur_mm" ]; then
        if [ -z "$base_mm" ] || [ "$(printf '%s\n%s\n' "$mm" "$base_mm" | sort -V | tail -1)" = "$mm" ]; then
          base=$f base_mm=$mm
        fi
      fi
    done
    if [ -z "$base" ]; then
      echo "skip: $name: no stored ABI of an earlier release (abi/$name-X.Y.abi)"
      continue
    fi
    rc=0
    report=$(abidiff --drop-private-types --headers-dir2 "$src/include/smtpd" \
             "$base" "$so" 2>&1) || rc=$?
    if [ $((rc & 3)) -ne 0 ]; then
      fail "$name: abidiff could not compare with $(basename "$base") (exit $rc):"
      indent "$report"
    elif [ $((rc & 8)) -ne 0 ] && [ "$base_mm" = "$cur_mm" ]; then
      fail "$name: ABI incompatible with release $base_mm ($(basename "$base")):"
      indent "$report"
    elif [ $((rc & 12)) -ne 0 ] && [ "$base_mm" = "$cur_mm" ]; then
      ok "$name: abidiff against $base_mm: compatible changes only:"
      indent "$report"
    elif [ $((rc & 12)) -ne 0 ]; then
      ok "$name: abidiff against $base_mm: $version is a later minor release, which may change the ABI:"
      indent "$report"
    else
      ok "$name: abidiff against $base_mm: no ABI change"
    fi
  done <"$manifest"
fi

echo "abi: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# check_install.sh SRC_DIR - the install test.
#
# Builds libsmtpd in a fresh build directory configured WITHOUT an install
# prefix, installs it with `cmake --install --prefix` to a directory chosen
# only then, moves the installed tree elsewhere (so nothing may depend on
# where it was configured or installed), and there:
#   - checks every exported symbol of every installed shared library
#     begins with smtpd_, and every public header compiles on its own
#     (C11, -Wall -Wextra -Wpedantic -Werror);
#   - for the core and each library installed (found from the installed
#     .pc files, so new libraries are covered without editing this file),
#     builds a consumer four ways: pkg-config shared, pkg-config static,
#     find_package(smtpd) shared, find_package(smtpd) static; runs each,
#     and checks the shared ones need the library's .so and the static
#     ones do not;
#   - checks each docs/man/NAME.N page is installed in man/manN and
#     formats without a groff warning.
# The consumer for library smtpd_X is tests/install/consumer/X.c (core.c
# for the core, and for a library without one of its own).
set -euo pipefail
src=$(cd "$1" && pwd)
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

echo "== build (no CMAKE_INSTALL_PREFIX given)"
cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSMTPD_BUILD_TESTS=OFF -DSMTPD_BUILD_EXAMPLES=OFF -DSMTPD_BUILD_BENCH=OFF \
  >"$tmp/configure.log" || { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/build" -j2 >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }

echo "== cmake --install --prefix, then move the tree"
cmake --install "$tmp/build" --prefix "$tmp/staged" >/dev/null
mv "$tmp/staged" "$tmp/moved"
prefix=$tmp/moved
if grep -rqs "$tmp/staged" "$prefix"; then
  fail "installed files name the install prefix: $(grep -rls "$tmp/staged" "$prefix" | tr '\n' ' ')"
fi
libdir=$(dirname "$(find "$prefix" -name libsmtpd.pc -path '*/pkgconfig/*' | head -1)")
libdir=${libdir%/pkgconfig}
test -f "$libdir/pkgconfig/libsmtpd.pc" || { echo "FAIL: no libsmtpd.pc installed"; exit 1; }
export PKG_CONFIG_PATH=$libdir/pkgconfig
export LD_LIBRARY_PATH=$libdir

# ---- the libraries installed ------------------------------------------------
modules=()
for pc in "$libdir"/pkgconfig/libsmtpd*.pc; do
  modules+=("$(basename "$pc" .pc)")
done
echo "libraries: ${modules[*]}"

# ---- relocatable .pc files ----------------------------------------------------
for m in "${modules[@]}"; do
  inc=$(pkg-config --variable=includedir "$m")
  lib=$(pkg-config --variable=libdir "$m")
  if [ "$(cd "$inc" 2>/dev/null && pwd)" = "$prefix/include" ] &&
     [ "$(cd "$lib" 2>/dev/null && pwd)" = "$libdir" ]; then
    ok "$m.pc resolves to the moved prefix"
  else
    fail "$m.pc: includedir=$inc libdir=$lib, not under $prefix"
  fi
done

# ---- exported symbols -------------------------------------------------------
for so in "$libdir"/libsmtpd*.so; do
  bad=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^smtpd_' || true)
  if [ -n "$bad" ]; then
    fail "$(basename "$so") exports non-API symbols: $(echo "$bad" | tr '\n' ' ')"
  else
    ok "$(basename "$so") exports only smtpd_*"
  fi
done

# ---- every public header on its own ----------------------------------------------
allflags=$(pkg-config --cflags "${modules[@]}")
for h in "$prefix"/include/smtpd/*.h; do
  printf '#include <smtpd/%s>\nint main(void) { return 0; }\n' "$(basename "$h")" >"$tmp/h.c"
  # shellcheck disable=SC2086
  if $cc -std=c11 -Wall -Wextra -Wpedantic -Werror $allflags -c "$tmp/h.c" -o "$tmp/h.o" 2>"$tmp/h.log"; then
    ok "smtpd/$(basename "$h") compiles alone"
  else
    fail "smtpd/$(basename "$h") does not compile alone: $(cat "$tmp/h.log")"
  fi
done

# needs_so BINARY SONAME_PREFIX: 0 when BINARY has a NEEDED entry for it
needs_so() { readelf -d "$1" | grep -q "NEEDED.*\[$2\.so"; }

run_consumer() { # run_consumer NAME BINARY LIB SHARED|STATIC
  local name=$1 bin=$2 lib=$3 kind=$4 out rc=0 dir
  dir=$(mktemp -d "$tmp/run.XXXXXX")
  out=$("$bin" "$dir" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "$name: exit $rc: $out"; return
  fi
  if [ "$kind" = shared ] && ! needs_so "$bin" "$lib"; then
    fail "$name: not linked against $lib.so"; return
  fi
  if [ "$kind" = static ] && needs_so "$bin" libsmtpd; then
    fail "$name: linked against a libsmtpd*.so: $(readelf -d "$bin" | grep NEEDED | tr -s ' ')"; return
  fi
  ok "$name: $out"
}

# ---- pkg-config consumers -----------------------------------------------------
cmake_libs=()
for m in "${modules[@]}"; do
  if [ "$m" = libsmtpd ]; then short=core; else short=${m#libsmtpd-}; short=${short//-/_}; fi
  cmake_libs+=("$short")
  c=$src/tests/install/consumer/$short.c
  extra=()
  if [ ! -f "$c" ]; then
    # no consumer of its own: core.c plus a reference to one of the
    # library's exported symbols, so that it must be linked
    c=$src/tests/install/consumer/core.c
    so=$libdir/$m.so
    sym=$(nm -D --defined-only "$so" | awk '$2 == "T" {print $3; exit}')
    printf 'extern void %s(void);\nvoid (*consumer_ref_%s)(void) = %s;\n' \
      "$sym" "$short" "$sym" >"$tmp/ref-$short.c"
    extra=("$tmp/ref-$short.c")
    echo "note: $m has no tests/install/consumer/$short.c; using core.c + $sym"
  fi
  # shared: what `pkg-config --libs` says
  # shellcheck disable=SC2046
  if $cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags "$m") "$c" "${extra[@]}" \
       -o "$tmp/pc-$short-shared" $(pkg-config --libs "$m") 2>"$tmp/cc.log"; then
    run_consumer "pkg-config $m shared" "$tmp/pc-$short-shared" "$m" shared
  else
    fail "pkg-config $m shared: $(cat "$tmp/cc.log")"
  fi
  # static: the libsmtpd* archives in the order `pkg-config --static`
  # gives, and what their .pc files declare for static linking: the
  # Requires.private modules (linked as shared libraries, as a host would;
  # a fully static gnutls is gnutls's business) and Libs.private
  smods=("$m") i=0
  while [ "$i" -lt "${#smods[@]}" ]; do
    for r in $(pkg-config --print-requires "${smods[$i]}" | awk '{print $1}') \
             $(pkg-config --print-requires-private "${smods[$i]}" | awk '{print $1}'); do
      case " ${smods[*]} " in *" $r "*) ;; *) smods+=("$r") ;; esac
    done
    i=$((i + 1))
  done
  private=() libs_private=()
  for sm in "${smods[@]}"; do
    case $sm in
      libsmtpd*)
        # shellcheck disable=SC2207
        libs_private+=($(sed -n 's/^Libs\.private://p' "$libdir/pkgconfig/$sm.pc")) ;;
      *) private+=("$sm") ;;
    esac
  done
  static_libs=(-L"$libdir" "-Wl,-Bstatic")
  for f in $(pkg-config --static --libs-only-l "$m"); do
    case $f in -lsmtpd*) static_libs+=("$f") ;; esac
  done
  static_libs+=("-Wl,-Bdynamic")
  if [ ${#private[@]} -gt 0 ]; then
    # shellcheck disable=SC2207
    static_libs+=($(pkg-config --libs "${private[@]}"))
  fi
  static_libs+=("${libs_private[@]}")
  # shellcheck disable=SC2046
  if $cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags --static "$m") "$c" "${extra[@]}" \
       -o "$tmp/pc-$short-static" "${static_libs[@]}" 2>"$tmp/cc.log"; then
    run_consumer "pkg-config $m static" "$tmp/pc-$short-static" "$m" static
  else
    fail "pkg-config $m static: $(cat "$tmp/cc.log")"
  fi
done

# ---- CMake consumers: find_package(smtpd), shared and static ---------------------
libs_arg=$(IFS=';'; echo "${cmake_libs[*]}")
if cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" \
     -DCMAKE_PREFIX_PATH="$prefix" -DSMTPD_LIBS="$libs_arg" \
     -DSMTPD_REF_DIR="$tmp" -DSMTPD_VERSION="$(pkg-config --modversion libsmtpd)" >"$tmp/consumer.log" 2>&1 &&
   cmake --build "$tmp/consumer" -j2 >>"$tmp/consumer.log" 2>&1; then
  for short in "${cmake_libs[@]}"; do
    if [ "$short" = core ]; then m=libsmtpd; else m=libsmtpd-${short//_/-}; fi
    run_consumer "find_package $short shared" "$tmp/consumer/consumer-$short-shared" "$m" shared
    run_consumer "find_package $short static" "$tmp/consumer/consumer-$short-static" "$m" static
  done
else
  fail "find_package consumers: $(cat "$tmp/consumer.log")"
fi

# ---- manual pages -----------------------------------------------------------------
for page in "$src"/docs/man/*.[1-8]; do
  [ -e "$page" ] || continue
  name=$(basename "$page"); section=${name##*.}
  if [ -f "$prefix/share/man/man$section/$name" ]; then
    ok "man page $name installed in man$section"
  else
    fail "man page $name not installed in share/man/man$section"
  fi
  # and it formats without a warning (groff-base is on every Debian)
  if command -v groff >/dev/null 2>&1; then
    if warn=$(groff -man -ww -z "$page" 2>&1) && [ -z "$warn" ]; then
      ok "man page $name formats cleanly"
    else
      fail "man page $name: groff -man -ww: $warn"
    fi
  fi
done

echo "install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

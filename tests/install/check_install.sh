#!/usr/bin/env bash
# check_install.sh SRC_DIR - install libsmtpd into a temporary prefix, then
# build and run a consumer through find_package(smtpd) and pkg-config,
# and check that only smtpd_* symbols are exported.
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake -S "$src" -B "$tmp/build" -DCMAKE_INSTALL_PREFIX="$tmp/prefix" \
  -DSMTPD_BUILD_TESTS=OFF -DSMTPD_BUILD_EXAMPLES=OFF -DSMTPD_BUILD_BENCH=OFF >/dev/null
cmake --build "$tmp/build" -j2 >/dev/null
cmake --install "$tmp/build" >/dev/null
for h in smtpd.h sasl.h received.h transcript.h; do
  test -f "$tmp/prefix/include/smtpd/$h" || { echo "missing header $h"; exit 1; }
done
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -1)
test -f "$libdir/pkgconfig/libsmtpd.pc" || { echo "missing libsmtpd.pc"; exit 1; }
# only the public API is exported
for so in "$libdir"/libsmtpd*.so; do
  bad=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^smtpd_' || true)
  if [ -n "$bad" ]; then echo "$so exports non-API symbols: $bad"; exit 1; fi
done
# CMake package
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/consumer/consumer"
# pkg-config
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc $(pkg-config --cflags libsmtpd) "$src/tests/install/consumer/main.c" \
  -o "$tmp/pc-consumer" $(pkg-config --libs libsmtpd)
LD_LIBRARY_PATH="$libdir" "$tmp/pc-consumer"
echo "install: 1 passed, 0 failed"

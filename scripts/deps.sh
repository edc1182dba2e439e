#!/usr/bin/env bash
# deps.sh - install the Debian packages libsmtpd needs, only when missing.
# Usage: scripts/deps.sh [build] [test] [clang] [fuzz] [doc]
#   build  compiler, CMake, GnuTLS, Cyrus SASL, Check, libuv (the default;
#          without libuv the build skips libsmtpd-uv)
#   test   also what the tests drive (scripts/test.sh)
#   clang  also clang (scripts/test.sh --clang)
#   fuzz   also clang's libFuzzer/sanitizer runtimes and llvm-cov
#          (scripts/fuzz.sh)
#   doc    also doxygen, for the optional `doc` target (CI does not use it)
# Run by scripts/run-server.sh and scripts/test.sh.
set -euo pipefail

build_pkgs=(cmake gcc make pkg-config libgnutls28-dev gnutls-bin
            libsasl2-dev sasl2-bin libsasl2-modules libsasl2-modules-db check
            libuv1-dev)
# what the tests drive: real clients, real Postfix tools, valgrind; abidiff
# for the ABI check (tests/abi/check_abi.sh)
test_pkgs=(python3 swaks libnet-ssleay-perl curl postfix valgrind abigail-tools)
# real Milter filters for tests/milter (libsmtpd-milter)
test_pkgs+=(opendkim opendkim-tools python3-milter rspamd)
# proxies in front of smtpd-maildir (tests/interop/test_proxy.py,
# test_xclient.py): HAProxy send-proxy/-v2, nginx's mail module with
# XCLIENT; both run from private configs, the system services are unused
test_pkgs+=(haproxy nginx-light libnginx-mod-mail)

want=("${build_pkgs[@]}")
for group in "${@:-build}"; do
  case $group in
    build) ;;
    test) want+=("${test_pkgs[@]}") ;;
    clang) want+=(clang) ;;
    fuzz) want+=(clang libclang-rt-14-dev llvm) ;;
    doc) want+=(doxygen) ;;
    *) echo "deps.sh: unknown group $group (build, test, clang, fuzz, doc)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
  fi
fi
# Postfix provides smtp-source/smtp-sink and, for tests/interop/test_lmtp.py,
# a private instance (its own config and queue directories and port); the
# system Postfix has no configuration and is never started.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

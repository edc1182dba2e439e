#!/usr/bin/env bash
# deps.sh - install the Debian packages libsmtpd needs, only when missing.
# Usage: scripts/deps.sh build|test
# Sourced or run by scripts/run-server.sh and scripts/test.sh.
set -euo pipefail

build_pkgs=(cmake gcc make pkg-config libgnutls28-dev gnutls-bin
            libsasl2-dev sasl2-bin libsasl2-modules libsasl2-modules-db check)
# what the tests drive: real clients, real Postfix tools, valgrind
test_pkgs=(python3 swaks libnet-ssleay-perl curl postfix valgrind)

want=("${build_pkgs[@]}")
if [ "${1:-build}" = test ]; then
  want+=("${test_pkgs[@]}")
fi

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
# Postfix only provides smtp-source/smtp-sink here: no configuration, and
# it is never started.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

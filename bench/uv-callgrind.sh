#!/usr/bin/env bash
# uv-callgrind.sh - instructions per 1 KB message over smtp-source (one
# session, CG_N messages), as bench/sink.sh --callgrind: libsmtpd-uv's
# test server (tests/uv/uv-testd --bench: messages discarded) beside
# smtpd-maildir --discard. (Ir(N) - Ir(0)) / N, so start-up and shutdown
# cancel out. Use a build without sanitizers.
#   bench/uv-callgrind.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: uv-callgrind.sh BUILD_DIR}
SOURCE=${SOURCE:-/usr/sbin/smtp-source}
CG_N=${CG_N:-2000}
work=$(mktemp -d /tmp/smtpd-uvcg.XXXXXX)
trap 'rm -rf "$work"' EXIT

ir() { # ir NAME MESSAGES -> total Ir
  local name=$1 m=$2 out=$work/cg.$1.$2 port pid
  if [ "$name" = uv ]; then
    valgrind --tool=callgrind --callgrind-out-file="$out" -q \
      "$build/tests/uv-testd" --bench >"$work/uv.out" 2>/dev/null &
    pid=$!
    for _ in $(seq 1 400); do grep -q '^ready' "$work/uv.out" 2>/dev/null && break; sleep 0.05; done
    port=$(awk '/^port /{print $2}' "$work/uv.out")
  else
    port=25309
    valgrind --tool=callgrind --callgrind-out-file="$out" -q \
      "$build/examples/smtpd-maildir" --discard --quiet \
      --listen 127.0.0.1:$port 2>/dev/null &
    pid=$!
    for _ in $(seq 1 400); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  fi
  if [ "$m" -gt 0 ]; then
    "$SOURCE" -s 1 -m "$m" -l 1024 -d -f a@example.org -t b@example.org \
      -M bench.example 127.0.0.1:"$port"
  else
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || true
  fi
  sleep 0.3
  kill -TERM "$pid"; wait "$pid" || true
  cat "$out"* | awk '/^summary:/ { s += $2 } END { print s + 0 }'
}
for name in uv maildir; do
  b=$(ir $name 0) k=$(ir $name "$CG_N")
  awk -v n="$name" -v b="$b" -v k="$k" -v cn="$CG_N" 'BEGIN {
    printf "%-8s %9.0f instructions per 1 KB message\n", n, (k - b) / cn }'
done

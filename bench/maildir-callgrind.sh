#!/usr/bin/env bash
# maildir-callgrind.sh - smtpd-maildir's own user-space instructions
# (valgrind --tool=callgrind, every process summed) per unit of work,
# client Postfix smtp-source over 127.0.0.1. Each figure is
# (Ir(N) - Ir(0)) / N, so start-up and shutdown cancel out.
#
#   bench/maildir-callgrind.sh SERVER [CASE...]
#
# Cases (default: all):
#   discard-log    1 session, CG_N 1 KiB messages, --discard, default log
#   discard-quiet  the same with --quiet
#   maildir-quiet  the same delivered to a Maildir (fsync included), --quiet
#   churn          CG_C 1 KiB messages, a new connection each, --discard --quiet
#   rcpt           extra recipients as smtp-source -r sends them (one RCPT,
#                  one reply, then the next): (Ir(-r CG_R) - Ir(-r 1)) /
#                  (CG_N * (CG_R - 1)), --discard --quiet
#   rcpt-pipelined the same with every transaction's MAIL, RCPTs, DATA and
#                  body sent in one write (PIPELINING; a Python client)
# SERVER_ARGS adds options (e.g. "--workers 2"). CG_KEEP=DIR keeps each
# run's callgrind files there (DIR/OPTIONS-N-ARGS.PID) for callgrind_annotate.
# Use a build without sanitizers (RelWithDebInfo).
set -euo pipefail
SERVER=${1:?usage: maildir-callgrind.sh SERVER [CASE...]}
shift
cases=${*:-discard-log discard-quiet maildir-quiet churn rcpt rcpt-pipelined}
SOURCE=${SOURCE:-/usr/sbin/smtp-source}
PORT=${PORT:-25311}
CG_N=${CG_N:-2000}
CG_C=${CG_C:-500}
CG_R=${CG_R:-11}
SERVER_ARGS=${SERVER_ARGS:-}
work=$(mktemp -d /tmp/smtpd-mdcg.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 400); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "maildir-callgrind.sh: nothing listens on $PORT" >&2; exit 1
}

# ir "SERVER OPTIONS" MESSAGES [smtp-source flags] -> total Ir
ir() {
  local opts=$1 m=$2; shift 2
  local out=$work/cg.$RANDOM
  rm -rf "$work/mail"
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --callgrind-out-file="$out.%p" -q \
    "$SERVER" $opts $SERVER_ARGS --maildir "$work/mail" --max-sessions 100000 --max-per-client 0 \
    --listen 127.0.0.1:$PORT 2>"$work/log" &
  pid=$!
  wait_port
  if [ "$m" -gt 0 ] && [ "${1:-}" = --pipelined ]; then
    python3 - "$PORT" "$m" "$2" <<'PY'
import socket, sys
port, m, r = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def replies(n):  # n complete replies (multi-line ones included)
    for _ in range(n):
        while True:
            line = f.readline()
            if not line:
                sys.exit("connection closed")
            if line[3:4] != b"-":
                break
replies(1)
s.sendall(b"EHLO bench.example\r\n")
replies(1)
body = b"Subject: x\r\n\r\n" + b"x" * 1000 + b"\r\n.\r\n"
rcpts = b"".join(b"RCPT TO:<%db@example.org>\r\n" % i for i in range(r))
tx = b"MAIL FROM:<a@example.org>\r\n" + rcpts + b"DATA\r\n"
for _ in range(m):
    s.sendall(tx)
    replies(1 + r + 1)
    s.sendall(body)
    replies(1)
s.sendall(b"QUIT\r\n")
replies(1)
PY
  elif [ "$m" -gt 0 ]; then
    "$SOURCE" -s 1 -m "$m" -l 1024 -f a@example.org -t b@example.org \
      -M bench.example "$@" 127.0.0.1:"$PORT"
  fi
  kill -TERM "$pid"; wait "$pid" || true; pid=
  cat "$out".* | awk '/^summary:/ { s += $2 } END { print s + 0 }'
  if [ -n "${CG_KEEP:-}" ]; then
    mkdir -p "$CG_KEEP"
    for f in "$out".*; do
      cp "$f" "$CG_KEEP/$(echo "$opts-$m-$*" | tr -c 'A-Za-z0-9_.-' _).${f##*.}"
    done
  fi
}

for c in $cases; do
  case $c in
    discard-log) o="--discard"; n=$CG_N; f=(-d) ;;
    discard-quiet) o="--discard --quiet"; n=$CG_N; f=(-d) ;;
    maildir-quiet) o="--quiet"; n=$CG_N; f=(-d) ;;
    churn) o="--discard --quiet"; n=$CG_C; f=() ;;
    rcpt)
      o="--discard --quiet"
      a=$(ir "$o" "$CG_N" -d -r 1); b=$(ir "$o" "$CG_N" -d -r "$CG_R")
      awk -v a="$a" -v b="$b" -v n="$CG_N" -v r="$CG_R" 'BEGIN {
        printf "%-14s %8.0f instructions per extra recipient (a reply each)\n",
          "rcpt", (b - a) / (n * (r - 1)) }'
      continue ;;
    rcpt-pipelined)
      o="--discard --quiet"
      a=$(ir "$o" "$CG_N" --pipelined 1); b=$(ir "$o" "$CG_N" --pipelined "$CG_R")
      awk -v a="$a" -v b="$b" -v n="$CG_N" -v r="$CG_R" 'BEGIN {
        printf "%-14s %8.0f instructions per extra pipelined recipient\n",
          "rcpt-pipelined", (b - a) / (n * (r - 1)) }'
      continue ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
  base=$(ir "$o" 0); k=$(ir "$o" "$n" "${f[@]}")
  awk -v c="$c" -v b="$base" -v k="$k" -v n="$n" 'BEGIN {
    printf "%-14s %8.0f instructions per 1 KiB message\n", c, (k - b) / n }'
done

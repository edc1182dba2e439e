#!/usr/bin/env bash
# callgrind.sh - user-space instructions of the server process, counted by
# valgrind --tool=callgrind, for smtpd-maildir (in its modes), Postfix's
# smtp-sink and bench/responder.c (a non-SMTP epoll responder: the floor
# for any line-based server), all driven by Postfix's smtp-source over
# 127.0.0.1 in the same run; plus RSS per idle connection (no valgrind).
# Prints one markdown table, ready to paste into docs/benchmarks.md.
#
#   bench/callgrind.sh [BUILD_DIR]      (default: build-h6, then build)
#
# Every per-unit figure is a difference of two runs, so start-up, the
# readiness probe and shutdown cancel out:
#   per message        (Ir(2N) - Ir(N)) / N        N = CG_N, CG_CONN
#   per body byte      (Ir(2M) - Ir(M)) / (M * 1 MiB)   M = CG_MB
#   per extra rcpt     (Ir(-r R) - Ir(-r 1)) / ((R - 1) * CG_RN)
#   per idle conn      (RSS with K greeted connections - RSS before) / K
# smtp-source sends its commands in lockstep (it waits for each reply,
# RCPTs too, whatever the server announces), so the recipient figure is
# per extra RCPT round trip.
#
# Sizes (environment): CG_N=1000 CG_MB=4 CG_CONN=300 CG_RN=200 CG_R=11
# IDLE_K=1000. About 4-5 minutes on 2 shared cores.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-}
if [ -z "$BUILD" ]; then
  for b in "$here/../build-h6" "$here/../build"; do
    [ -x "$b/examples/smtpd-maildir" ] && { BUILD=$b; break; }
  done
fi
BUILD=$(cd "${BUILD:?callgrind.sh: no build directory}" && pwd)
SERVER=${SERVER:-$BUILD/examples/smtpd-maildir}
RESPONDER=${RESPONDER:-$BUILD/bench/smtpd-bench-responder}
SOURCE=${SOURCE:-/usr/sbin/smtp-source}
SINK=${SINK:-/usr/sbin/smtp-sink}
PORT=${PORT:-25321}
CG_N=${CG_N:-1000}
CG_MB=${CG_MB:-4}
CG_CONN=${CG_CONN:-300}
CG_RN=${CG_RN:-200}
CG_R=${CG_R:-11}
IDLE_K=${IDLE_K:-1000}

for t in "$SERVER" "$RESPONDER" "$SOURCE" "$SINK"; do
  [ -x "$t" ] || { echo "callgrind.sh: $t not found" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not installed" >&2; exit 1; }
ulimit -n $((IDLE_K + 256)) 2>/dev/null || true
work=$(mktemp -d /tmp/smtpd-cg.XXXXXX)   # on disk, not tmpfs, here
chmod 777 "$work"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
started=$(date +%s)

wait_port() {
  for _ in $(seq 1 400); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "callgrind.sh: nothing listens on port $PORT" >&2; exit 1
}

# start CONFIG [wrapper...]: CONFIG is log, quiet, maildir, sink or resp.
start() {
  local cfg=$1; shift
  case $cfg in
    log)     "$@" "$SERVER" --discard --max-sessions 100000 --max-per-client 0 \
               --listen 127.0.0.1:$PORT 2>"$work/server.log" & ;;
    quiet)   "$@" "$SERVER" --discard --quiet --max-sessions 100000 --max-per-client 0 \
               --listen 127.0.0.1:$PORT 2>"$work/server.log" & ;;
    maildir) rm -rf "$work/Maildir"
             "$@" "$SERVER" --maildir "$work/Maildir" --quiet \
               --max-sessions 100000 --max-per-client 0 --listen 127.0.0.1:$PORT \
               2>"$work/server.log" & ;;
    resp)    "$@" "$RESPONDER" 127.0.0.1:$PORT 2>"$work/server.log" & ;;
    sink)    # as root smtp-sink wants -u; run it (valgrind too) as nobody
             if [ "$(id -u)" = 0 ]; then
               setpriv --reuid=nobody --regid=nogroup --clear-groups \
                 "$@" "$SINK" 127.0.0.1:$PORT 1024 2>"$work/server.log" &
             else
               "$@" "$SINK" 127.0.0.1:$PORT 1024 2>"$work/server.log" &
             fi ;;
  esac
  pid=$!   # setpriv and valgrind exec: $pid is the server itself
  wait_port
}
stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }

# ir CONFIG SMTP-SOURCE-ARGS... -> total instructions of the server process
ir() {
  local cfg=$1; shift
  local out=$work/cg.out
  rm -f "$out"*
  start "$cfg" valgrind --tool=callgrind --callgrind-out-file="$out" -q
  "$SOURCE" -f a@example.org -t b@example.org -M bench.example "$@" \
    127.0.0.1:$PORT
  sleep 0.2   # let the server finish the last close before SIGTERM
  stop
  cat "$out"* | awk '/^summary:/ { s += $2 } END { print s + 0 }'
}

per() { awk -v a="$1" -v b="$2" -v d="$3" -v f="${4:-%.0f}" \
          'BEGIN { printf f, (b - a) / d }'; }

# one figure for one config: prints the per-unit value
per_1k()   { per "$(ir "$1" -s 1 -m "$CG_N" -l 1024 -d)" \
                 "$(ir "$1" -s 1 -m $((2 * CG_N)) -l 1024 -d)" "$CG_N"; }
per_byte() { per "$(ir "$1" -s 1 -m "$CG_MB" -l 1048576 -d)" \
                 "$(ir "$1" -s 1 -m $((2 * CG_MB)) -l 1048576 -d)" \
                 $((CG_MB * 1048576)) "%.2f"; }
per_conn() { per "$(ir "$1" -s 1 -m "$CG_CONN" -l 1024)" \
                 "$(ir "$1" -s 1 -m $((2 * CG_CONN)) -l 1024)" "$CG_CONN"; }
per_rcpt() { per "$(ir "$1" -s 1 -m "$CG_RN" -l 1024 -d -r 1)" \
                 "$(ir "$1" -s 1 -m "$CG_RN" -l 1024 -d -r "$CG_R")" \
                 $(((CG_R - 1) * CG_RN)); }

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
per_idle() { # KiB of server RSS per greeted idle connection
  start "$1"
  local before after
  before=$(rss_kb)
  python3 - "$PORT" "$IDLE_K" "$work/idle.ready" <<'EOF' &
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
for s in socks:           # every greeting read: the server holds n sessions
    s.recv(512)
open(ready, "w").close()
time.sleep(60)
EOF
  local py=$!
  for _ in $(seq 1 1200); do [ -e "$work/idle.ready" ] && break; sleep 0.05; done
  sleep 0.3
  after=$(rss_kb)
  kill "$py" 2>/dev/null || true; wait "$py" 2>/dev/null || true
  rm -f "$work/idle.ready"
  stop
  awk -v a="$before" -v b="$after" -v k="$IDLE_K" \
    'BEGIN { printf "%.2f KiB (%d → %d)", (b - a) / k, a, b }'
}

log_1k=$(per_1k log);      quiet_1k=$(per_1k quiet)
maildir_1k=$(per_1k maildir)
sink_1k=$(per_1k sink);    resp_1k=$(per_1k resp)
quiet_b=$(per_byte quiet); sink_b=$(per_byte sink); resp_b=$(per_byte resp)
quiet_c=$(per_conn quiet); sink_c=$(per_conn sink); resp_c=$(per_conn resp)
quiet_r=$(per_rcpt quiet); sink_r=$(per_rcpt sink); resp_r=$(per_rcpt resp)
quiet_i=$(per_idle quiet); sink_i=$(per_idle sink); resp_i=$(per_idle resp)
took=$(( $(date +%s) - started ))

rev=$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$here/.." status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo "+changes" || true)
cat <<EOF
$(date -u '+%F %H:%M UTC'), $(uname -srm), $(nproc) CPUs, commit $rev$dirty,
$(basename "$BUILD") ($(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)),
valgrind $(valgrind --version | sed 's/valgrind-//'), $(dpkg-query -W -f='Postfix ${Version}' postfix 2>/dev/null || echo Postfix);
CG_N=$CG_N CG_MB=$CG_MB CG_CONN=$CG_CONN CG_RN=$CG_RN CG_R=$CG_R IDLE_K=$IDLE_K; took ${took} s.
Instructions (Ir, user space, server process only) unless marked KiB.

| figure (smtp-source -s 1) | smtpd-maildir | smtp-sink | responder |
|---|---|---|---|
| per 1 KiB message, \`--discard\` (log line per message) | $log_1k | $sink_1k | $resp_1k |
| per 1 KiB message, \`--discard --quiet\` | $quiet_1k | $sink_1k | $resp_1k |
| per 1 KiB message, \`--maildir DIR --quiet\` (written, fsynced, Received: added) | $maildir_1k | $sink_1k | $resp_1k |
| per body byte, 1 MiB messages (\`--discard --quiet\`) | $quiet_b | $sink_b | $resp_b |
| per message, a new connection each (\`--discard --quiet\`) | $quiet_c | $sink_c | $resp_c |
| per extra recipient (\`-r $CG_R\` vs \`-r 1\`, \`--discard --quiet\`) | $quiet_r | $sink_r | $resp_r |
| RSS per idle connection ($IDLE_K greeted, RSS before → after, KiB) | $quiet_i | $sink_i | $resp_i |
EOF

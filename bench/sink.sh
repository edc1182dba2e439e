#!/usr/bin/env bash
# sink.sh - smtpd-maildir --discard (A) against Postfix's smtp-sink (B),
# both fed by Postfix's smtp-source over 127.0.0.1, alternating A B A B.
#
# For every workload and server it prints messages/s, MB/s, the server's
# CPU time per message (utime+stime from /proc/PID/stat: on a small
# machine the client is often the bottleneck, and msgs/s alone hides the
# server's own cost), the server's peak RSS, and the ratios A/B.
#
#   bench/sink.sh [--callgrind] [SERVER]
#
#   SERVER       smtpd-maildir binary (default build-example/examples/...)
#   --callgrind  instead: run each server under valgrind --tool=callgrind
#                and print instructions per 1 KB message and per body byte
#                of 1 MB messages (repeatable on noisy machines;
#                bench/callgrind.sh measures more figures, beside
#                bench/responder.c as well)
#
# Counts are modest by default; the issue's full sizes:
#   N_1X=20000 N_20X=50000 N_1MB=200 N_CHURN=5000 N_IDLE=2000 bench/sink.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mode=normal
if [ "${1:-}" = "--callgrind" ]; then mode=callgrind; shift; fi
SERVER=${1:-${SERVER:-$here/../build-example/examples/smtpd-maildir}}
SOURCE=${SOURCE:-/usr/sbin/smtp-source}
SINK=${SINK:-/usr/sbin/smtp-sink}
PORT_A=${PORT_A:-25301}
PORT_B=${PORT_B:-25302}
ROUNDS=${ROUNDS:-2}
N_1X=${N_1X:-5000}       # 1 session  x N 1 KB messages
N_20X=${N_20X:-20000}    # 20 sessions, N 1 KB messages in all
N_1MB=${N_1MB:-200}      # 4 sessions, N 1 MB messages in all
N_CHURN=${N_CHURN:-2000} # 10 sessions, one message per connection
N_IDLE=${N_IDLE:-2000}   # idle connections held open
CG_N=${CG_N:-2000}       # callgrind: 1 KB messages
CG_MB=${CG_MB:-10}       # callgrind: 1 MB messages
TCK=$(getconf CLK_TCK)

for t in "$SERVER" "$SOURCE" "$SINK"; do
  [ -x "$t" ] || { echo "sink.sh: $t not found" >&2; exit 1; }
done
work=$(mktemp -d /tmp/smtpd-bench.XXXXXX)
chmod 777 "$work"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

wait_port() { # wait until something listens on 127.0.0.1:$1
  for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "sink.sh: nothing listens on port $1" >&2; exit 1
}

start() { # start A or B (optionally under a wrapper like valgrind)
  local which=$1; shift
  if [ "$which" = A ]; then
    "$@" "$SERVER" --discard --quiet --max-sessions 100000 --max-per-client 0 \
      --listen 127.0.0.1:$PORT_A 2>"$work/a.log" &
    pid=$!; port=$PORT_A
  else
    # smtp-sink accepts and discards; backlog 1024. As root it wants -u;
    # instead the whole command (valgrind too) runs as nobody, so its
    # output files are written by the same user that created them.
    if [ "$(id -u)" = 0 ]; then
      setpriv --reuid=nobody --regid=nogroup --clear-groups \
        "$@" "$SINK" 127.0.0.1:$PORT_B 1024 2>"$work/b.log" &
    else
      "$@" "$SINK" 127.0.0.1:$PORT_B 1024 2>"$work/b.log" &
    fi
    pid=$!; port=$PORT_B
  fi
  wait_port "$port"
  # setpriv and valgrind exec: $pid is the server itself
}

stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }

cpu_s() { # utime+stime of $pid in seconds
  awk -v t="$TCK" '{ sub(/.*\) /, ""); print ($12 + $13) / t }' "/proc/$pid/stat"
}
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }

# run_load NAME SESSIONS MESSAGES LENGTH [smtp-source flags...]
run_load() {
  local name=$1 s=$2 m=$3 len=$4; shift 4
  for round in $(seq 1 "$ROUNDS"); do
    for which in A B; do
      start "$which"
      local c0 t0 t1 c1
      c0=$(cpu_s); t0=$(date +%s.%N)
      "$SOURCE" -s "$s" -m "$m" -l "$len" -f a@example.org -t b@example.org \
        -M bench.example "$@" 127.0.0.1:"$port"
      t1=$(date +%s.%N); c1=$(cpu_s)
      local hwm; hwm=$(hwm_kb)
      stop
      awk -v n="$name" -v w="$which" -v r="$round" -v m="$m" -v len="$len" \
          -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v h="$hwm" 'BEGIN {
        dt = t1 - t0; cpu = c1 - c0
        printf "%-8s %s round %d  %9.0f msgs/s %8.1f MB/s %8.1f us CPU/msg  peak RSS %6d KiB\n",
          n, (w == "A" ? "smtpd-maildir" : "smtp-sink    "), r, m / dt,
          m * len / dt / 1e6, cpu / m * 1e6, h
        print n, w, m / dt, m * len / dt / 1e6, cpu / m * 1e6, h >> "'"$work/results"'"
      }'
    done
  done
}

# run_idle: RSS growth per idle connection
run_idle() {
  for which in A B; do
    start "$which"
    local before after
    before=$(rss_kb)
    python3 - "$port" "$N_IDLE" "$work/idle.ready" <<'EOF' &
import socket, sys, time, os
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    socks.append(s)
for s in socks:           # every greeting read: the server holds n sessions
    s.recv(512)
open(ready, "w").close()
time.sleep(30)
EOF
    local py=$!
    for _ in $(seq 1 600); do [ -e "$work/idle.ready" ] && break; sleep 0.05; done
    sleep 0.3
    after=$(rss_kb)
    kill "$py" 2>/dev/null || true; wait "$py" 2>/dev/null || true
    rm -f "$work/idle.ready"
    stop
    awk -v w="$which" -v b="$before" -v a="$after" -v n="$N_IDLE" 'BEGIN {
      printf "idle     %s  %d connections: %.2f KiB RSS each (%d -> %d KiB)\n",
        (w == "A" ? "smtpd-maildir" : "smtp-sink    "), n, (a - b) / n, b, a }'
  done
}

summary() {
  echo
  echo "ratios smtpd-maildir / smtp-sink (means over rounds):"
  awk '{ k = $1 SUBSEP $2; c[k]++; r[k] += $3; mb[k] += $4; cpu[k] += $5; rss[k] += $6; names[$1] = 1 }
    END {
      for (n in names) {
        a = n SUBSEP "A"; b = n SUBSEP "B"
        if (!c[a] || !c[b]) continue
        printf "%-8s msgs/s x%.2f   MB/s x%.2f   CPU/msg x%.2f   peak RSS x%.2f\n", n,
          (r[a]/c[a]) / (r[b]/c[b]), (mb[a]/c[a]) / (mb[b]/c[b]),
          (cpu[a]/c[a]) / (cpu[b]/c[b] > 0 ? cpu[b]/c[b] : 1e-9),
          (rss[a]/c[a]) / (rss[b]/c[b])
      }
    }' "$work/results"
}

# callgrind: instructions per message = (Ir(N) - Ir(0)) / N, so start-up
# and shutdown cancel out. Callgrind writes its totals when the server
# exits (smtpd-maildir on SIGTERM) or dies of the signal (smtp-sink).
cg_ir() { # cg_ir WHICH SESSIONS MESSAGES LENGTH -> total Ir
  local which=$1 s=$2 m=$3 len=$4
  local out="$work/cg.$which.$m.$len"
  rm -f "$out"*
  start "$which" valgrind --tool=callgrind --callgrind-out-file="$out" -q
  if [ "$m" -gt 0 ]; then
    "$SOURCE" -s "$s" -m "$m" -l "$len" -d -f a@example.org -t b@example.org \
      -M bench.example 127.0.0.1:"$port"
  fi
  stop
  cat "$out"* 2>/dev/null | awk '/^summary:/ { s += $2 } END { print s + 0 }'
}

run_callgrind() {
  command -v valgrind >/dev/null || { echo "sink.sh: valgrind not installed" >&2; exit 1; }
  for which in A B; do
    local name base k1 mb
    name=$([ "$which" = A ] && echo smtpd-maildir || echo smtp-sink)
    base=$(cg_ir "$which" 1 0 0)
    k1=$(cg_ir "$which" 1 "$CG_N" 1024)
    mb=$(cg_ir "$which" 1 "$CG_MB" 1048576)
    awk -v n="$name" -v b="$base" -v k="$k1" -v m="$mb" -v cn="$CG_N" -v cm="$CG_MB" 'BEGIN {
      printf "%-13s %9.0f instructions per 1 KB message, %6.2f per body byte of 1 MB messages\n",
        n, (k - b) / cn, (m - b) / (cm * 1048576) }'
  done
}

echo "# $(date -u +%F) $(uname -srm), $(nproc) CPUs; A = $SERVER --discard, B = $SINK"
if [ "$mode" = callgrind ]; then
  run_callgrind
  exit 0
fi
: > "$work/results"
run_load 1x1KB  1  "$N_1X"    1024 -d
run_load 20x1KB 20 "$N_20X"   1024 -d
run_load 4x1MB  4  "$N_1MB"   1048576 -d
run_load churn  10 "$N_CHURN" 1024
run_idle
summary

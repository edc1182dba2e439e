#!/usr/bin/env bash
# delivery.sh - messages per second with real, durable delivery, and fsyncs
# per message: smtpd-maildir --maildir (written to tmp/, fsynced, renamed to
# new/, new/ fsynced) against Postfix's own smtpd in a private instance
# writing to its queue (cleanup fsyncs the queue file). Both are driven by
# Postfix's smtp-source over 127.0.0.1 with 1 KiB messages, at 1 and 20
# sessions, alternating A B A B. Prints a markdown table ready to paste.
#
#   bench/delivery.sh [BUILD_DIR]        (default: build-h6, then build)
#
# The private Postfix instance: its own config_directory and
# queue_directory under a temporary directory, `postfix -c DIR start`, an
# smtpd on a free 127.0.0.1 port; the system Postfix is never touched.
# Every message is put on hold (smtpd_end_of_data_restrictions =
# check_client_access static:HOLD), so the figure is smtpd -> cleanup ->
# queue file on disk, with no delivery agent running behind it;
# in_flow_delay = 0 (otherwise cleanup waits for qmgr tokens that a hold
# queue never gives back). The master needs root; without it (or without
# Postfix) only smtpd-maildir is measured and the table says why.
#
# fsyncs per message: separate runs at 1 and at 20 sessions under
# `strace -f -e trace=fsync,fdatasync` (-f follows every thread of
# smtpd-maildir, its delivery threads included, and for Postfix every
# process of the instance from `postfix start` on); only calls between the
# first and last message are counted (strace -ttt timestamps; a call
# another thread interrupted is counted once, at its "<unfinished ...>"
# line, never at its "resumed>" line), divided by the messages.
# smtpd-maildir's delivery threads share one fsync of new/ among the
# messages that end together (group commit), so its figure at 20
# sessions is below its figure at 1.
#
# Sizes (environment): D_N1=300 (1 session) D_N20=1000 (20 sessions)
# D_NS=100 (strace run, 1 session) D_NS20=400 (strace run, 20 sessions)
# ROUNDS=2 DISK_DIR=/var/tmp (where the Maildir and the queue go: a disk,
# not tmpfs). SERVER=path measures another smtpd-maildir binary (an older
# build, for before/after figures); A_ARGS adds options to it. About 3
# minutes here.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-}
if [ -z "$BUILD" ]; then
  for b in "$here/../build-h6" "$here/../build"; do
    [ -x "$b/examples/smtpd-maildir" ] && { BUILD=$b; break; }
  done
fi
BUILD=$(cd "${BUILD:?delivery.sh: no build directory}" && pwd)
SERVER=${SERVER:-$BUILD/examples/smtpd-maildir}
SOURCE=${SOURCE:-/usr/sbin/smtp-source}
POSTFIX=${POSTFIX:-/usr/sbin/postfix}
D_N1=${D_N1:-300}
D_N20=${D_N20:-1000}
D_NS=${D_NS:-100}
D_NS20=${D_NS20:-400}
A_ARGS=${A_ARGS:-}
ROUNDS=${ROUNDS:-2}
DISK_DIR=${DISK_DIR:-/var/tmp}
PORT_A=${PORT_A:-25331}
PORT_B=${PORT_B:-25332}

for t in "$SERVER" "$SOURCE"; do
  [ -x "$t" ] || { echo "delivery.sh: $t not found" >&2; exit 1; }
done
work=$(mktemp -d "$DISK_DIR/smtpd-delivery.XXXXXX")
chmod 755 "$work"
fstype=$(findmnt -no FSTYPE -T "$work" 2>/dev/null || stat -f -c %T "$work")
pid=; srv=; pf_up=; strace_pid=
cleanup() {
  [ -n "$pid" ] && kill "$srv" "$pid" 2>/dev/null
  [ -n "$pf_up" ] && "$POSTFIX" -c "$work/pf/conf" stop >/dev/null 2>&1
  [ -n "$strace_pid" ] && wait "$strace_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
started=$(date +%s)

wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "delivery.sh: nothing listens on port $1" >&2; return 1
}

# ---- A: smtpd-maildir ------------------------------------------------------
start_a() { # [wrapper...]
  rm -rf "$work/Maildir"
  # shellcheck disable=SC2086
  "$@" "$SERVER" $A_ARGS --maildir "$work/Maildir" --quiet --max-sessions 10000 --max-per-client 0 \
    --listen 127.0.0.1:$PORT_A 2>"$work/a.log" &
  pid=$!
  wait_port $PORT_A
  srv=$pid   # under strace: the server is strace's child; signal it, not strace
  [ $# -gt 0 ] && srv=$(pgrep -P "$pid" | head -1)
  return 0
}
stop_a() {
  kill -TERM "$srv" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
count_a() { find "$work/Maildir/new" -type f | wc -l; }

# ---- B: a private Postfix instance -----------------------------------------
pf_why=
if [ ! -x "$POSTFIX" ]; then
  pf_why="Postfix is not installed (scripts/deps.sh test installs it)"
elif [ "$(id -u)" != 0 ]; then
  pf_why="not root: Postfix's master(8) must start as root (it drops to mail_owner itself)"
fi
pf_setup() {
  local d=$work/pf
  mkdir -p "$d/conf" "$d/queue" "$d/data"
  chown postfix:postfix "$d/data"
  cat >"$d/conf/master.cf" <<EOF
127.0.0.1:$PORT_B inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  cat >"$d/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench
mydestination =
mynetworks = 127.0.0.0/8
maillog_file = $d/maillog
maillog_file_prefixes = $d
alias_maps =
alias_database =
smtputf8_enable = no
smtpd_peername_lookup = no
in_flow_delay = 0
smtpd_client_connection_count_limit = 0
smtpd_end_of_data_restrictions = check_client_access static:HOLD
default_transport = discard:private benchmark instance (nothing leaves the hold queue)
EOF
}
start_b() { # [strace output file]
  rm -rf "$work/pf/queue"; mkdir -p "$work/pf/queue"
  if [ -n "${1:-}" ]; then
    strace -f -ttt -e trace=fsync,fdatasync -o "$1" \
      "$POSTFIX" -c "$work/pf/conf" start >"$work/pf.start" 2>&1 &
    strace_pid=$!
    # postfix start returns once master runs; strace stays until it ends
    for _ in $(seq 1 300); do grep -q . "$work/pf/queue/pid/master.pid" 2>/dev/null && break; sleep 0.05; done
  else
    "$POSTFIX" -c "$work/pf/conf" start >"$work/pf.start" 2>&1
  fi
  pf_up=1
  wait_port $PORT_B
}
stop_b() {
  "$POSTFIX" -c "$work/pf/conf" stop >/dev/null 2>&1 || true
  for _ in $(seq 1 200); do
    [ -e "$work/pf/queue/pid/master.pid" ] && kill -0 "$(cat "$work/pf/queue/pid/master.pid")" 2>/dev/null || break
    sleep 0.05
  done
  pf_up=
  if [ -n "$strace_pid" ]; then wait "$strace_pid" 2>/dev/null || true; strace_pid=; fi
}
count_b() { find "$work/pf/queue/hold" -type f | wc -l; }

if [ -z "$pf_why" ]; then
  pf_setup
  if ! start_b 2>/dev/null; then
    pf_why="the private instance did not start: $(tr '\n' ' ' <"$work/pf.start" | cut -c1-300)"
  else
    stop_b
  fi
fi

# ---- runs --------------------------------------------------------------------
: >"$work/results"
# rate WHICH SESSIONS MESSAGES
rate() {
  local which=$1 s=$2 m=$3 port t0 t1 n
  if [ "$which" = A ]; then start_a; port=$PORT_A; else start_b; port=$PORT_B; fi
  # one message first, untimed: Postfix's master spawns smtpd, cleanup and
  # trivial-rewrite on the first connection
  "$SOURCE" -s 1 -m 1 -l 1024 -f a@example.org -t b@example.org \
    -M bench.example 127.0.0.1:"$port"
  t0=$(date +%s.%N)
  "$SOURCE" -s "$s" -m "$m" -l 1024 -d -f a@example.org -t b@example.org \
    -M bench.example 127.0.0.1:"$port"
  t1=$(date +%s.%N)
  sleep 0.3
  if [ "$which" = A ]; then n=$(count_a); stop_a; else n=$(count_b); stop_b; fi
  if [ "$n" != $((m + 1)) ]; then
    echo "delivery.sh: $which stored $n of $((m + 1)) messages" >&2; exit 1
  fi
  awk -v w="$which" -v s="$s" -v m="$m" -v t0="$t0" -v t1="$t1" \
    'BEGIN { printf "%s %s %.0f\n", w, s, m / (t1 - t0) }' >>"$work/results"
}

# fsyncs WHICH SESSIONS MESSAGES -> fsync+fdatasync calls per message
fsyncs() {
  local which=$1 s=$2 m=$3 tr=$work/strace.$1 port t0 t1
  rm -f "$tr"
  if [ "$which" = A ]; then
    start_a strace -f -ttt -e trace=fsync,fdatasync -o "$tr"; port=$PORT_A
  else
    start_b "$tr"; port=$PORT_B
  fi
  "$SOURCE" -s 1 -m 1 -l 1024 -f a@example.org -t b@example.org \
    -M bench.example 127.0.0.1:"$port"   # untimed, as in rate()
  t0=$(date +%s.%N)
  "$SOURCE" -s "$s" -m "$m" -l 1024 -d -f a@example.org -t b@example.org \
    -M bench.example 127.0.0.1:"$port"
  sleep 0.5
  t1=$(date +%s.%N)
  if [ "$which" = A ]; then stop_a; else stop_b; fi
  awk -v t0="$t0" -v t1="$t1" -v n="$m" '
    $3 !~ /resumed>/ && $3 ~ /^(fsync|fdatasync)\(/ && $2 >= t0 && $2 <= t1 { c++ }
    END { printf "%.2f", c / n }' "$tr"
}

sides="A"
[ -z "$pf_why" ] && sides="A B"
for _ in $(seq 1 "$ROUNDS"); do
  for w in $sides; do rate "$w" 1 "$D_N1"; done
  for w in $sides; do rate "$w" 20 "$D_N20"; done
done
fs_a=$(fsyncs A 1 "$D_NS")
fs_a20=$(fsyncs A 20 "$D_NS20")
fs_b="—"; fs_b20="—"
[ -z "$pf_why" ] && fs_b=$(fsyncs B 1 "$D_NS") && fs_b20=$(fsyncs B 20 "$D_NS20")
took=$(( $(date +%s) - started ))

cell() { # cell WHICH SESSIONS -> "r1 / r2" msgs/s
  awk -v w="$1" -v s="$2" '$1 == w && $2 == s { printf "%s%s", sep, $3; sep = " / " }
    END { if (!sep) printf "—" }' "$work/results"
}
rev=$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$here/.." status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo "+changes" || true)
cat <<EOF
$(date -u '+%F %H:%M UTC'), $(uname -srm), $(nproc) CPUs, commit $rev$dirty, $(basename "$BUILD");
$(dpkg-query -W -f='Postfix ${Version}' postfix 2>/dev/null || echo Postfix); files on $DISK_DIR ($fstype);
1 KiB messages, smtp-source -d; D_N1=$D_N1 D_N20=$D_N20 D_NS=$D_NS D_NS20=$D_NS20 ROUNDS=$ROUNDS; took ${took} s.
A: $SERVER $A_ARGS

| figure | smtpd-maildir \`--maildir DIR --quiet\` | Postfix smtpd → cleanup → queue (hold) |
|---|---|---|
| messages/s, 1 session (one per round) | $(cell A 1) | $(cell B 1) |
| messages/s, 20 sessions (one per round) | $(cell A 20) | $(cell B 20) |
| fsync + fdatasync calls per message (1 session) | $fs_a | $fs_b |
| fsync + fdatasync calls per message (20 sessions) | $fs_a20 | $fs_b20 |
EOF
[ -n "$pf_why" ] && echo && echo "Postfix not measured: $pf_why"
exit 0

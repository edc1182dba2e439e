#!/usr/bin/env bash
# workers.sh - smtpd-maildir --discard --quiet with --workers 1 and 2,
# wall time of Postfix's smtp-source for S sessions and M 1 KiB messages
# (alternating 1 2 1 2 ..., ROUNDS rounds), and the ratio. A report, not
# a test: on a shared or small machine the client competes for the same
# cores.
#   bench/workers.sh SERVER
# CLIENT=blast drives the server with bench/blast.c instead (BLAST, by
# default smtpd-bench-blast next to SERVER's build: PIPELINING and
# CHUNKING, B=16 transactions per write), a client light enough that the
# server is what runs out of CPU; use M=1000000 or more with it.
set -euo pipefail
SERVER=${1:?usage: workers.sh SERVER}
SOURCE=${SOURCE:-/usr/sbin/smtp-source}
CLIENT=${CLIENT:-smtp-source}
BLAST=${BLAST:-$(dirname "$SERVER")/../bench/smtpd-bench-blast}
B=${B:-16}
PORT=${PORT:-25331}
S=${S:-20}
M=${M:-20000}
ROUNDS=${ROUNDS:-3}
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null' EXIT
declare -A sum=([1]=0 [2]=0)
for round in $(seq 1 "$ROUNDS"); do
  for w in 1 2; do
    "$SERVER" --discard --quiet --workers "$w" --max-sessions 100000 --max-per-client 0 \
      --listen 127.0.0.1:$PORT 2>/dev/null &
    pid=$!
    for _ in $(seq 1 200); do
      (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05
    done
    sleep 0.3 # every worker's socket bound
    t0=$(date +%s.%N)
    if [ "$CLIENT" = blast ]; then
      "$BLAST" 127.0.0.1:$PORT "$S" "$M" "$B" >/dev/null
    else
      "$SOURCE" -s "$S" -m "$M" -l 1024 -d -f a@example.org -t b@example.org \
        -M bench.example 127.0.0.1:$PORT
    fi
    t1=$(date +%s.%N)
    kill -TERM "$pid"; wait "$pid" || true; pid=
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    sum[$w]=$(awk -v s="${sum[$w]}" -v d="$dt" 'BEGIN { print s + d }')
    printf 'round %d  --workers %d  %6.2f s  %7.0f msgs/s\n' "$round" "$w" \
      "$dt" "$(awk -v m="$M" -v d="$dt" 'BEGIN { print m / d }')"
  done
done
awk -v a="${sum[1]}" -v b="${sum[2]}" 'BEGIN {
  printf "mean wall time ratio workers 1 / workers 2: %.2f\n", a / b }'
echo "# client $CLIENT, S=$S M=$M; $(nproc) CPUs, load average: $(cut -d" " -f1-3 /proc/loadavg)"

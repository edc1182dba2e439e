#!/usr/bin/env bash
# fuzz.sh - build and run libsmtpd's libFuzzer harnesses (docs/fuzzing.md).
#
#   scripts/fuzz.sh [NAME...]     build, then run each harness (all, or the
#                                 named ones: conversation, session, parse,
#                                 received, transcript, tls, cyrus, milter)
#                                 for FUZZ_SECONDS
#   scripts/fuzz.sh seed          rewrite the seeds derived from
#                                 tests/transcripts (corpus/*/tr-*)
#   scripts/fuzz.sh coverage      line coverage of every lib/ file reached
#                                 by replaying the corpora (clang
#                                 source-based coverage, llvm-cov report)
#   scripts/fuzz.sh list          the harnesses that exist
#
# Environment:
#   FUZZ_SECONDS  seconds per harness (default 60)
#   FUZZ_JOBS     harnesses run at once (default: the number of CPUs)
#   FUZZ_BUILD    build directory (default build-fuzz; coverage: build-cov)
#   FUZZ_GROW     1: new interesting inputs are added to tests/fuzz/corpus/
#                 (default 0: they go to a temporary directory)
#   FUZZ_ARGS     extra libFuzzer flags (e.g. "-jobs=4 -workers=4")
#
# A harness that fails (oracle violation, sanitizer report, leak, timeout,
# out of memory) has its input copied to tests/fuzz/regressions/NAME/,
# where the ctest test fuzz_replay_NAME replays it from then on; the
# script then exits non-zero. Needs clang with libFuzzer and the sanitizer
# runtimes (Debian: clang, libclang-rt-14-dev; scripts/deps.sh fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzzdir=$root/tests/fuzz
secs=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
grow=${FUZZ_GROW:-0}

# libFuzzer options per harness: -max_len and the per-input timeout
declare -A MAXLEN=([conversation]=4096 [session]=8192 [parse]=2048
                   [received]=2048 [transcript]=8192 [tls]=6000
                   [cyrus]=2048 [milter]=4096)

harnesses() {
  local f
  for f in "$fuzzdir"/fuzz_*.c; do
    f=${f##*/fuzz_}
    echo "${f%.c}"
  done
}

corpus_of() {
  if [ "$1" = milter ]; then echo "$fuzzdir/corpus-milter"; else
    echo "$fuzzdir/corpus/$1"; fi
}

# ---- seeds from tests/transcripts ------------------------------------------

seed() {
  python3 - "$root" <<'PY'
import os, re, sys
root = sys.argv[1]
tdir = os.path.join(root, "tests", "transcripts")
fdir = os.path.join(root, "tests", "fuzz", "corpus")

def unescape(t):
    out = bytearray(); i = 0
    while i < len(t):
        c = t[i]
        if c != "\\" or i + 1 == len(t):
            out += c.encode("latin1", "replace"); i += 1; continue
        n = t[i + 1]
        if n in "rnt0\\":
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0",
                    "\\": b"\\"}[n]; i += 2
        elif n == "x":
            out.append(int(t[i + 2:i + 4], 16)); i += 4
        elif n == "{":
            m = re.match(r"\{(\d+):([^}]*)\}", t[i + 1:])
            out += m.group(2).encode("latin1") * int(m.group(1))
            i += 1 + m.end()
        else:
            out += c.encode(); i += 1
    return bytes(out)

def parse(path):
    """configuration directives and packets (lists of bytes; None marks
    a timeout)"""
    conf, packets, cur = {}, [], None
    for line in open(path, encoding="latin1").read().split("\n"):
        tag = line[:2]
        if tag in ("C:", "C~"):
            text = unescape(line[3:] if len(line) > 2 else "")
            if tag == "C:":
                text += b"\r\n"
            cur = (cur or b"") + text
            continue
        if cur is not None:
            packets.append(cur); cur = None
        if line.startswith("!timeout"):
            packets.append(None)
        if line.startswith("@"):
            w = line[1:].split()
            if w:
                conf.setdefault(w[0], []).append(w[1:])
    if cur is not None:
        packets.append(cur)
    return conf, packets

def opt(conf, name):
    return any(a[:2] == [name, "on"] for a in conf.get("option", []))

def esc(data, specials):
    out = bytearray()
    for b in data:
        if b in specials:
            out += bytes([5, b])
        else:
            out.append(b)
    return bytes(out)

def conversation(conf, packets, seedbyte):
    le = {"reject": 0, "normalize": 1, "accept": 2}
    o0 = le.get((conf.get("line-ending") or [["reject"]])[0][0], 0)
    if (conf.get("sync") or [[""]])[0][0] == "allow": o0 |= 4
    if (conf.get("long-line") or [[""]])[0][0] == "reject": o0 |= 8
    if opt(conf, "chunking") or opt(conf, "binarymime"): o0 |= 16
    if opt(conf, "lmtp"): o0 |= 32
    if opt(conf, "dsn"): o0 |= 64
    if opt(conf, "xclient"): o0 |= 128
    o1 = 1 if "proxy" in conf else 2 if "implicit-tls" in conf else 0
    if opt(conf, "starttls"): o1 |= 4
    if "sasl" in conf: o1 |= 8
    if opt(conf, "auth-plaintext"): o1 |= 16
    if "limit" in conf: o1 |= 32
    if opt(conf, "smtputf8") or opt(conf, "requiretls") or opt(conf, "limits"):
        o1 |= 64
    if opt(conf, "reply-per-rcpt") or "param" in conf or "command" in conf:
        o1 |= 128
    out = bytearray([o0, o1, seedbyte])
    for p in packets:
        if p is None:
            out.append(4)
        else:
            out += esc(p, (1, 2, 3, 4, 5, 6)) + b"\x01"
    return bytes(out)

def session(conf, packets):
    le = {"reject": 0, "normalize": 1, "accept": 2}
    o = le.get((conf.get("line-ending") or [["reject"]])[0][0], 0)
    if (conf.get("sync") or [[""]])[0][0] == "allow": o |= 4
    if (conf.get("long-line") or [[""]])[0][0] == "reject": o |= 8
    if "sasl" not in conf: o |= 16
    if opt(conf, "auth-plaintext"): o |= 32
    out = bytearray([o, 0x40])
    for p in packets:
        if p is not None:
            out += p.replace(b"\x01", b"") + b"\x01"
    return bytes(out)

def write(harness, name, data):
    d = os.path.join(fdir, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

for h in ("conversation", "session", "transcript"):
    d = os.path.join(fdir, h)
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f.startswith("tr-"):
                os.unlink(os.path.join(d, f))
n = 0
for name in sorted(os.listdir(tdir)):
    if not name.endswith(".txt"):
        continue
    base = name[:-4]
    path = os.path.join(tdir, name)
    conf, packets = parse(path)
    write("conversation", "tr-" + base, conversation(conf, packets, 0))
    # the same conversation with a host that refuses and defers
    write("conversation", "tr-" + base + "-host", conversation(conf, packets, 0x9b))
    write("session", "tr-" + base, session(conf, packets))
    # byte 0: the split of the first run (0: whole)
    write("transcript", "tr-" + base, b"\0" + open(path, "rb").read())
    n += 1
print("seed: %d transcripts -> corpus/{conversation,session,transcript}/tr-*" % n)
PY
}

# ---- build -----------------------------------------------------------------

build() {
  local dir=$1
  shift
  scripts/deps.sh fuzz # clang, libclang-rt-14-dev, llvm: only when missing
  CC=clang cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSMTPD_BUILD_EXAMPLES=OFF -DSMTPD_BUILD_BENCH=OFF "$@" >/dev/null
}

# ---- run -------------------------------------------------------------------

# run_one NAME BIN: fuzz for $secs; 0 when nothing was found
run_one() {
  local n=$1 bin=$2 corpus work log rc=0 f
  corpus=$(corpus_of "$n")
  mkdir -p "$corpus"
  work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-$n.XXXXXX")
  log=$work/log
  local dirs=("$work/new" "$corpus")
  mkdir -p "$work/new" "$work/art"
  if [ "$grow" = 1 ]; then dirs=("$corpus"); fi
  (cd "$work" && LSAN_OPTIONS=suppressions=$fuzzdir/lsan.supp:print_suppressions=0 \
     "$bin" -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 \
     -max_len="${MAXLEN[$n]:-4096}" -print_final_stats=1 \
     -artifact_prefix="$work/art/" ${FUZZ_ARGS:-} "${dirs[@]}") \
     >"$log" 2>&1 || rc=$?
  local execs
  execs=$(grep -ho 'stat::number_of_executed_units: *[0-9]*' "$log" |
          awk '{s += $2} END {print s + 0}')
  if ls "$work/art/"* >/dev/null 2>&1; then
    mkdir -p "$fuzzdir/regressions/$n"
    for f in "$work/art/"*; do
      cp "$f" "$fuzzdir/regressions/$n/"
      echo "fuzz.sh: $n: kept $(basename "$f") in tests/fuzz/regressions/$n/"
    done
    rc=1
  fi
  if [ "$rc" -ne 0 ]; then
    echo "fuzz.sh: $n FAILED after $execs executions; log:" >&2
    grep -v '^#[0-9]' "$log" | tail -40 >&2
  else
    echo "fuzz.sh: $n: $execs executions in ${secs}s, nothing found"
  fi
  rm -rf "$work"
  return "$rc"
}

run() {
  local dir=${FUZZ_BUILD:-build-fuzz} want=("$@") n pids=() names=() rc=0 i
  [ ${#want[@]} -gt 0 ] || mapfile -t want < <(harnesses)
  case $dir in /*) ;; *) dir=$root/$dir ;; esac # FUZZ_BUILD may be absolute
  build "$dir" -DSMTPD_FUZZ=ON
  cmake --build "$dir" -j"$(nproc)" --target fuzz >/dev/null
  # the Milter adapter's harness is built by its own fragment
  cmake --build "$dir" -j"$(nproc)" --target fuzz_milter >/dev/null 2>&1 || true
  for n in "${want[@]}"; do
    local bin=$dir/tests/fuzz_$n
    if [ ! -x "$bin" ]; then
      echo "fuzz.sh: $n: not built here (its adapter is missing), skipped"
      continue
    fi
    run_one "$n" "$bin" &
    pids+=($!)
    names+=("$n")
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
      wait -n || true
    done
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || rc=1
  done
  return "$rc"
}

# ---- coverage --------------------------------------------------------------

coverage() {
  local dir=${FUZZ_BUILD:-build-cov} prof n bin objs=() dirs
  case $dir in /*) ;; *) dir=$root/$dir ;; esac # FUZZ_BUILD may be absolute
  build "$dir" -DSMTPD_FUZZ_COVERAGE=ON
  cmake --build "$dir" -j"$(nproc)" --target fuzz_replay >/dev/null
  prof=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-cov.XXXXXX")
  for n in $(harnesses); do
    bin=$dir/tests/fuzz_replay_$n
    [ -x "$bin" ] || continue
    dirs=("$(corpus_of "$n")" "$fuzzdir/regressions/$n")
    LLVM_PROFILE_FILE="$prof/$n.profraw" "$bin" "${dirs[@]}" >/dev/null
    objs+=(-object "$bin")
  done
  llvm-profdata merge -sparse "$prof"/*.profraw -o "$prof/all.profdata"
  echo "Line coverage of lib/ reached by the fuzz corpora (all harnesses):"
  llvm-cov report "${objs[@]:1}" -instr-profile="$prof/all.profdata" \
    "$root"/lib/*.c "$root"/lib/*/*.c |
    awk '/^Filename/ {printf "%-24s %8s %8s %8s\n", "lib/ file", "lines",
                      "missed", "cover"; next}
         /^---/ || NF < 10 {next}
         {printf "%-24s %8s %8s %8s\n", $1, $8, $9, $10}'
  rm -rf "$prof"
}

case "${1:-}" in
  seed) seed ;;
  coverage) coverage ;;
  list) harnesses ;;
  -h|--help) sed -n '2,30p' "$0" ;;
  *) run "$@" ;;
esac

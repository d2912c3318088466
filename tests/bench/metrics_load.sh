#!/bin/bash
# metrics_load.sh - load on GET /metrics: aibrix_runtime standardising a fake vLLM that exposes
# ~5000 series, against the same wrk load on the fake engine's own /metrics (issue 4).
#
#   tests/bench/metrics_load.sh [--duration S] [--rounds N] [--connections N] [--series N]
#                               [--quick] [--no-write]
#
# wrk (Debian `wrk`, installed when missing) runs with 64 connections and 2 threads on the
# engine's /metrics and on the runtime's, interleaved for --rounds rounds (default 3 x 20 s
# each) so that a noisy neighbour hits both alike. Reported per run and as medians:
# requests/s, p50/p99 latency, errors (non-2xx and socket errors); the p99 ratio runtime/engine
# of the medians (goal: <= 2); how many requests the engine served while the runtime was loaded
# (single-flight shares them); the runtime's RSS sampled every second over the whole benchmark
# (goal: stable). The results replace the section between <!-- bench:metrics:begin --> and
# <!-- bench:metrics:end --> in docs/benchmarks.md (appended when missing); nothing else in that
# file is touched. --quick: one round of 5 s, nothing written.
# Benchmarks are not tests: nothing here fails on a timing.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${AIBRIX_BUILD_DIR:-$REPO/build}
RUNTIME=$BUILD/control/aibrix_runtime
PYTHON=/usr/bin/python3
DURATION=20
ROUNDS=3
CONNS=64
SERIES=5000
WRITE=1

while [ $# -gt 0 ]; do
    case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --series) SERIES=$2; shift 2 ;;
    --quick) DURATION=5; ROUNDS=1; WRITE=0; shift ;;
    --no-write) WRITE=0; shift ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "metrics_load.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

[ -x "$RUNTIME" ] || { echo "metrics_load.sh: $RUNTIME not built (ninja -C $BUILD)" >&2; exit 2; }
if ! command -v wrk >/dev/null; then
    echo "metrics_load.sh: installing wrk" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
fi

TMP=$(mktemp -d /tmp/aibrix-metrics-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    $PYTHON -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_url() {
    for _ in $(seq 1 300); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "metrics_load.sh: $1 does not answer" >&2
    exit 1
}

# --- the fake engine and the runtime ---------------------------------------------------------
$PYTHON "$REPO/tests/fakes/fake_engine.py" --series "$SERIES" --port 0 >"$TMP/engine.out" \
    2>"$TMP/engine.log" &
PIDS+=($!)
for _ in $(seq 1 200); do grep -qs READY "$TMP/engine.out" && break; sleep 0.05; done
EPORT=$(awk '/^READY/ {print $2}' "$TMP/engine.out")
ENGINE=http://127.0.0.1:$EPORT
wait_url "$ENGINE/metrics"

RPORT=$(free_port)
INFERENCE_ENGINE=vllm INFERENCE_ENGINE_ENDPOINT=$ENGINE METRIC_SCRAPE_TIMEOUT=5 \
    "$RUNTIME" --host 127.0.0.1 --port "$RPORT" --log-level warn 2>"$TMP/runtime.log" &
RPID=$!
PIDS+=($RPID)
RT=http://127.0.0.1:$RPORT
wait_url "$RT/healthz"

curl -s -o "$TMP/engine.txt" "$ENGINE/metrics"
curl -s -o "$TMP/runtime.txt" "$RT/metrics"
ENGINE_SERIES=$(grep -vc '^#' "$TMP/engine.txt")
ENGINE_BYTES=$(wc -c <"$TMP/engine.txt")
RT_SERIES=$(grep -vc '^#' "$TMP/runtime.txt")
RT_BYTES=$(wc -c <"$TMP/runtime.txt")
grep -q '^aibrix_engine_up 1$' "$TMP/runtime.txt" || {
    echo "metrics_load.sh: the runtime does not see the engine; log:" >&2
    cat "$TMP/runtime.log" >&2
    exit 1
}

engine_requests() {
    curl -s "$ENGINE/__fake/stats" | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)["requests_total"])'
}

run_wrk() { # url label -> $TMP/label.wrk
    wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency "$1" >"$TMP/$2.wrk" 2>&1
}

# wrk's latency lines are "99%  12.34ms"; print the value in milliseconds
pct_ms() { # file percent
    awk -v p="$2%" '$1 == p {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000;
        printf "%.2f", v }' "$1"
}
rps() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }
errors() { # non-2xx/3xx responses + socket errors
    awk '/Non-2xx or 3xx responses:/ {n += $NF}
         /Socket errors:/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10}
         END {print n + 0}' "$1"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$RPID/status"; }

echo "engine: $ENGINE_SERIES series, $ENGINE_BYTES bytes; runtime: $RT_SERIES series, $RT_BYTES bytes" >&2
RSS_SAMPLES="$TMP/rss"
(while kill -0 "$RPID" 2>/dev/null; do rss_kib >>"$RSS_SAMPLES"; sleep 1; done) &
SAMPLER=$!
SHARED=0
R_TOTAL=0
RSS_AFTER=()
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS: wrk -c$CONNS -d${DURATION}s on the engine's /metrics ..." >&2
    run_wrk "$ENGINE/metrics" "engine$round"
    echo "round $round/$ROUNDS: wrk -c$CONNS -d${DURATION}s on the runtime's /metrics ..." >&2
    REQ0=$(engine_requests)
    run_wrk "$RT/metrics" "runtime$round"
    REQ1=$(engine_requests)
    RSS_AFTER+=("$(rss_kib)")
    SHARED=$((SHARED + REQ1 - REQ0))
    R_TOTAL=$((R_TOTAL + $(awk '/requests in/ {print $1}' "$TMP/runtime$round.wrk")))
done
kill $SAMPLER 2>/dev/null || true

median() { sort -n | awk '{v[NR] = $1} END {printf "%s", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
stat_of() { # target metric -> median over the rounds
    for round in $(seq 1 "$ROUNDS"); do
        f="$TMP/$1$round.wrk"
        case $2 in
        p50) pct_ms "$f" 50 ;; p99) pct_ms "$f" 99 ;; rps) rps "$f" ;;
        esac
        echo
    done | median
}
E_P50=$(stat_of engine p50); E_P99=$(stat_of engine p99); E_RPS=$(stat_of engine rps)
R_P50=$(stat_of runtime p50); R_P99=$(stat_of runtime p99); R_RPS=$(stat_of runtime rps)
E_ERR=0; R_ERR=0
for round in $(seq 1 "$ROUNDS"); do
    E_ERR=$((E_ERR + $(errors "$TMP/engine$round.wrk")))
    R_ERR=$((R_ERR + $(errors "$TMP/runtime$round.wrk")))
done
RATIO=$(awk -v r="$R_P99" -v e="$E_P99" 'BEGIN {printf "%.2f", r / e}')
RSS_FIRST=$(head -1 "$RSS_SAMPLES"); RSS_LAST=$(tail -1 "$RSS_SAMPLES")
RSS_MAX=$(sort -n "$RSS_SAMPLES" | tail -1)
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

SECTION="$TMP/section.md"
{
    echo "<!-- bench:metrics:begin -->"
    echo "<!-- generated by tests/bench/metrics_load.sh; edits between these markers are overwritten -->"
    echo
    echo "## Metrics: GET /metrics under load"
    echo
    echo "- **Date:** $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- **Command:** \`tests/bench/metrics_load.sh --duration $DURATION --connections $CONNS --series $SERIES\`"
    echo "- **Machine:** $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r); wrk, the fake engine and the runtime share it"
    echo "- **Tools:** $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $("$RUNTIME" --version); fake engine \`tests/fakes/fake_engine.py --series $SERIES\` (Python http.server, a thread per connection)"
    echo "- **Load:** wrk 2 threads, $CONNS connections, keep-alive, ${DURATION} s per run; $ROUNDS round(s), each the engine alone then the runtime (which scrapes the engine on every request, concurrent requests sharing one engine request)"
    echo "- **Payload:** engine $ENGINE_SERIES series / $ENGINE_BYTES bytes; runtime body $RT_SERIES series / $RT_BYTES bytes (the engine's families, the standard ones, the runtime's own)"
    echo
    echo "| target | run | requests/s | p50 ms | p99 ms | errors |"
    echo "|---|---|---|---|---|---|"
    for round in $(seq 1 "$ROUNDS"); do
        for t in engine runtime; do
            f="$TMP/$t$round.wrk"
            name=$([ $t = engine ] && echo "fake engine's /metrics" || echo "aibrix_runtime /metrics")
            echo "| $name | $round | $(rps "$f") | $(pct_ms "$f" 50) | $(pct_ms "$f" 99) | $(errors "$f") |"
        done
    done
    echo "| **fake engine, median** | | **$E_RPS** | **$E_P50** | **$E_P99** | $E_ERR |"
    echo "| **aibrix_runtime, median** | | **$R_RPS** | **$R_P50** | **$R_P99** | $R_ERR |"
    echo
    echo "- **p99 ratio runtime / engine (medians):** $RATIO (goal: at most 2)"
    echo "- **Engine requests while the runtime served $R_TOTAL:** $SHARED (single-flight)"
    echo "- **Runtime RSS** sampled every second over the whole benchmark: at start $(mib "$RSS_FIRST") MiB, at the end $(mib "$RSS_LAST") MiB, max $(mib "$RSS_MAX") MiB ($(wc -l <"$RSS_SAMPLES") samples); after each runtime run: $(for k in "${RSS_AFTER[@]}"; do printf '%s, ' "$(mib "$k")"; done | sed 's/, $//') MiB"
    echo
    echo "<!-- bench:metrics:end -->"
} >"$SECTION"

cat "$SECTION"
cat "$TMP"/engine*.wrk "$TMP"/runtime*.wrk >&2

if [ "$WRITE" = 1 ]; then
    DOC=$REPO/docs/benchmarks.md
    $PYTHON - "$DOC" "$SECTION" <<'EOF'
import sys
doc, section = sys.argv[1], open(sys.argv[2]).read()
text = open(doc).read()
begin, end = "<!-- bench:metrics:begin -->", "<!-- bench:metrics:end -->"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + section.rstrip("\n") + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n" + section
open(doc, "w").write(text)
EOF
    echo "metrics_load.sh: wrote the section in $DOC" >&2
fi

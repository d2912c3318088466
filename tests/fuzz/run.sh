#!/bin/sh
# run.sh [SECONDS] - build the libFuzzer harnesses and run each for SECONDS (default 30).
#
# Each harness runs on a scratch copy of its committed corpus under tests/fuzz/corpus/, so
# the repository only ever holds the hand-written seeds. Prints executions and crashes per
# harness; crash inputs are kept in build-fuzz/fuzz-artifacts/. Exits 1 if anything crashed.
set -eu

secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-fuzz"
harnesses="fuzz_s3_xml fuzz_tos_json fuzz_hf_json fuzz_uri fuzz_headers fuzz_promtext fuzz_jsonbody fuzz_names"

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Dfuzz=true
fi
# ninja (not meson compile) so a harness added since the last setup regenerates the build
targets=""
for h in $harnesses; do targets="$targets tests/fuzz/$h"; done
# shellcheck disable=SC2086 # word splitting of the target list is intended
ninja -C "$build" $targets

artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT INT TERM

failed=0
for h in $harnesses; do
    mkdir -p "$scratch/$h"
    cp -R "$root/tests/fuzz/corpus/$h/." "$scratch/$h/"
    log="$scratch/$h.log"
    rc=0
    "$build/tests/fuzz/$h" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$artifacts/$h-" "$scratch/$h" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then # a crash ends the run before the final stats
        execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    fi
    crashes=0
    if [ "$rc" -ne 0 ]; then
        crashes=1
        failed=1
        echo "--- $h failed (exit $rc), end of log:"
        tail -n 40 "$log"
    fi
    echo "$h: execs=${execs:-0} crashes=$crashes"
done
exit "$failed"

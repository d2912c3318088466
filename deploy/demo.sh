#!/bin/sh
# `make demo`: the main job on the embedded default. Generates a small model (safetensors
# shards, config, tokenizer) as a local file:// source and serves it through aibrix_runtime's
# FUSE mount at ./models/demo, with /healthz, /ready (and, as they land, /metrics and the
# API) on :8080. Runs in the foreground until Ctrl-C, which unmounts cleanly.
set -eu
build=${1:-build}
cd "$(dirname "$0")/.."
src=.demo/source/demo-model
if [ ! -f "$src/config.json" ]; then
    /usr/bin/python3 tests/fakes/modelgen.py "$src" --size 64M --seed 7 >/dev/null
fi
mkdir -p models
cat >&2 <<MSG
demo: serving file://$PWD/$src at ./models/demo (cache in ./.demo/cache)
demo: try  ls -l models/demo;  curl localhost:8080/ready;  curl localhost:8080/metrics
demo: Ctrl-C to stop
MSG
exec "$build/control/aibrix_runtime" --port "${PORT:-8080}" --mount-point "$PWD/models" \
    --cache-dir "$PWD/.demo/cache" --model "demo=file://$PWD/$src"

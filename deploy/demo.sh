#!/bin/sh
# `make demo`: the main job on the embedded default. Generates a small model (safetensors
# shards, config, tokenizer) as a local file:// source and brings it to ./models/demo with
# aibrix_download. Once aibrix_runtime's mount lands (issue 3), this mounts it instead.
set -eu
build=${1:-build}
cd "$(dirname "$0")/.."
src=.demo/source/demo-model
if [ ! -f "$src/config.json" ]; then
    /usr/bin/python3 tests/fakes/modelgen.py "$src" --size 64M --seed 7 >/dev/null
fi
echo "demo: downloading file://$PWD/$src to ./models/demo" >&2
dir=$("$build/downloader/aibrix_download" --model-uri "file://$PWD/$src" --local-dir ./models \
    --model-name demo --enable-progress-bar | tail -n 1)
echo "demo: model ready in $dir:" >&2
ls -l "$dir"

#!/usr/bin/env python3
"""Deterministic sample model trees for tests (nothing is ever downloaded from a hub).

Why: every integration test needs realistic model data: safetensors shards with a
valid header (8-byte little-endian header length + JSON {name: {dtype, shape,
data_offsets}} + random tensor bytes), config.json, tokenizer files, nested
folders, and LoRA adapters (adapter_config.json + adapter_model.safetensors)
that engines open and read. Same seed and size -> byte-identical tree.

Module:  generate_model(outdir, size=8 MiB, seed=1, shards=None, odd_names=False)
         generate_lora(outdir, seed=1, rank=8, size=None, base_model=...)
         generate(outdir, size, seed, lora=False, ...)   dispatches to the above
         read_safetensors_header(path) -> (header_dict, data_start)
         tree_manifest(outdir) -> {relpath: {"size", "sha256"}}
         All generators return that manifest.
CLI:     python3 modelgen.py OUTDIR --size 8M --seed 1 [--lora] [--shards N]
         [--odd-names]      prints the manifest as JSON on stdout.
"""

import argparse
import hashlib
import json
import math
import os
import random
import struct
import sys

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1}
MiB = 1 << 20


def parse_size(s):
    """'8M' -> 8 MiB, '512K', '1G', '1000' (bytes)."""
    if isinstance(s, int):
        return s
    s = str(s).strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    if mult != 1:
        s = s[:-1]
    return int(float(s) * mult)


def write_safetensors(path, tensors, rng, metadata=None):
    """tensors: list of (name, dtype, shape). Writes header + random data."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    for name, dtype, shape in tensors:
        n = DTYPE_SIZE[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)  # as the safetensors library pads
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        left = off
        while left > 0:
            n = min(left, 4 * MiB)
            f.write(rng.randbytes(n))
            left -= n
    return off


def read_safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return header, 8 + n


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)


def _json(path, obj):
    _write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def tree_manifest(outdir):
    out = {}
    for dp, dns, fns in os.walk(outdir):
        dns.sort()
        for fn in sorted(fns):
            p = os.path.join(dp, fn)
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for b in iter(lambda: f.read(MiB), b""):
                    h.update(b)
            out[os.path.relpath(p, outdir).replace(os.sep, "/")] = {"size": os.path.getsize(p), "sha256": h.hexdigest()}
    return dict(sorted(out.items()))


def _tokenizer(rng, vocab):
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"<unk>": 0, "<s>": 1, "</s>": 2}
    while len(words) < vocab:
        w = "".join(rng.choice(letters) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.3:
            w = "\u0120" + w
        words.setdefault(w, len(words))
    merges = []
    for w in list(words)[3:min(vocab, 400)]:
        if len(w) >= 2:
            merges.append("%s %s" % (w[0], w[1:]))
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for t, i in (("<unk>", 0), ("<s>", 1), ("</s>", 2))
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": words, "merges": merges},
    }


def _shard_tensors(rng, shard_idx, nshards, budget, hidden, layers_per_shard, first_layer):
    """Split `budget` bytes into llama-like tensors for one shard."""
    tensors = []
    if shard_idx == 0:
        tensors.append(("model.norm.weight", "F32", (hidden,)))
    if shard_idx == nshards - 1:
        tensors.append(("lm_head.bias_odd", "U8", (3, 5 + shard_idx)))  # an odd size on purpose
    fixed = sum(DTYPE_SIZE[d] * math.prod(s) for _, d, s in tensors)
    left = max(0, budget - fixed)
    names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj")
    parts = layers_per_shard * len(names)
    row_bytes = hidden * 2  # BF16
    per = max(1, left // parts // row_bytes)
    i = 0
    for layer in range(first_layer, first_layer + layers_per_shard):
        for n in names:
            rows = per
            if i == parts - 1:  # last tensor takes the remainder (in whole rows)
                used = sum(DTYPE_SIZE[d] * math.prod(s) for _, d, s in tensors)
                rows = max(1, (budget - used) // row_bytes)
            tensors.append(("model.layers.%d.%s.weight" % (layer, n), "BF16", (rows, hidden)))
            i += 1
    return tensors


def generate_model(outdir, size=8 * MiB, seed=1, shards=None, odd_names=False, hidden=256):
    """A full-model repo layout. Returns the manifest."""
    size = parse_size(size)
    rng = random.Random("model:%d" % seed)
    os.makedirs(outdir, exist_ok=True)
    if shards is None:
        shards = 1 if size < 4 * MiB else (2 if size < 64 * MiB else math.ceil(size / (32 * MiB)))
    vocab = 500 + (seed % 7) * 10
    layers_per_shard = 2
    n_layers = layers_per_shard * shards
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "num_hidden_layers": n_layers,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-05,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "transformers_version": "4.44.0",
        "_fake_seed": seed,
    }
    _json(os.path.join(outdir, "config.json"), config)
    _json(os.path.join(outdir, "generation_config.json"),
          {"bos_token_id": 1, "eos_token_id": 2, "do_sample": True, "temperature": 0.6, "top_p": 0.9})
    _json(os.path.join(outdir, "tokenizer.json"), _tokenizer(rng, vocab))
    _json(os.path.join(outdir, "tokenizer_config.json"), {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
    })
    _json(os.path.join(outdir, "special_tokens_map.json"),
          {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    _write(os.path.join(outdir, ".gitattributes"),
           "*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
           "*.model filter=lfs diff=lfs merge=lfs -text\n")
    _write(os.path.join(outdir, "README.md"), "---\nlicense: apache-2.0\n---\n# Fake model (seed %d)\n"
           "Generated by tests/fakes/modelgen.py.\n" % seed)
    # nested folders, like meta-llama's original/
    _json(os.path.join(outdir, "original", "params.json"),
          {"dim": hidden, "n_layers": n_layers, "n_heads": 4, "vocab_size": vocab, "norm_eps": 1e-05})
    _write(os.path.join(outdir, "original", "tokenizer.model"), rng.randbytes(4096 + seed % 97))
    _write(os.path.join(outdir, "original", "deeper", "notes.txt"), "nested file for seed %d\n" % seed)
    if odd_names:
        _write(os.path.join(outdir, "extra", "dir a", "w+b c.txt"), "space and plus in the name\n")
        _write(os.path.join(outdir, "extra", "\u00fcnicode-\u00e9.json"), '{"unicode": true}\n')
        _write(os.path.join(outdir, "extra", "empty.txt"), b"")

    small = sum(v["size"] for v in tree_manifest(outdir).values())
    weights = max(shards * 4096, size - small)
    per_shard = weights // shards
    weight_map = {}
    total = 0
    for i in range(shards):
        fn = "model.safetensors" if shards == 1 else "model-%05d-of-%05d.safetensors" % (i + 1, shards)
        budget = per_shard if i < shards - 1 else weights - per_shard * (shards - 1)
        budget -= 512  # roughly the header
        tensors = _shard_tensors(rng, i, shards, max(budget, 1024), hidden, layers_per_shard, i * layers_per_shard)
        total += write_safetensors(os.path.join(outdir, fn), tensors, rng, {"format": "pt"})
        for name, _, _ in tensors:
            weight_map[name] = fn
    if shards > 1:
        _json(os.path.join(outdir, "model.safetensors.index.json"),
              {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    return tree_manifest(outdir)


def generate_lora(outdir, seed=1, rank=8, size=None, base_model="fake-org/fake-llama", hidden=256, layers=2):
    """A PEFT LoRA adapter repo: adapter_config.json + adapter_model.safetensors.
    `size` (optional) pads the adapter by raising the rank."""
    rng = random.Random("lora:%d" % seed)
    os.makedirs(outdir, exist_ok=True)
    targets = ["q_proj", "v_proj"]
    if size is not None:
        per_rank = layers * len(targets) * 2 * hidden * 2  # A and B, BF16
        rank = max(rank, parse_size(size) // per_rank)
    _json(os.path.join(outdir, "adapter_config.json"), {
        "base_model_name_or_path": base_model,
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": rank * 2,
        "lora_dropout": 0.05,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "target_modules": targets,
        "modules_to_save": None,
        "_fake_seed": seed,
    })
    tensors = []
    for layer in range(layers):
        for t in targets:
            pre = "base_model.model.model.layers.%d.self_attn.%s" % (layer, t)
            tensors.append((pre + ".lora_A.weight", "BF16", (rank, hidden)))
            tensors.append((pre + ".lora_B.weight", "BF16", (hidden, rank)))
    write_safetensors(os.path.join(outdir, "adapter_model.safetensors"), tensors, rng, {"format": "pt"})
    _write(os.path.join(outdir, "README.md"), "# Fake LoRA adapter (seed %d, r=%d)\n" % (seed, rank))
    return tree_manifest(outdir)


def generate(outdir, size=8 * MiB, seed=1, lora=False, shards=None, odd_names=False):
    if lora:
        return generate_lora(outdir, seed=seed, size=None if size is None else size)
    return generate_model(outdir, size=size, seed=seed, shards=shards, odd_names=odd_names)


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate a deterministic sample model tree.")
    p.add_argument("outdir")
    p.add_argument("--size", default="8M", help="approximate total size (e.g. 512K, 8M, 1G)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lora", action="store_true", help="generate a LoRA adapter repo instead of a model")
    p.add_argument("--shards", type=int, default=None)
    p.add_argument("--odd-names", action="store_true", help="add files with spaces, '+', unicode, empty")
    a = p.parse_args(argv)
    size = None if (a.lora and a.size == "8M") else a.size
    m = generate(a.outdir, size=size, seed=a.seed, lora=a.lora, shards=a.shards, odd_names=a.odd_names)
    json.dump(m, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Builds the fuzz seed corpora fuzz/corpus/<target>/ from the fixture models and configs/.

Seeds are kept small (a few KB) so libFuzzer mutates them quickly: real headers and files of the
fixtures, cut down where they are large (a safetensors file keeps only its smallest tensors, the
tokenizers keep the 256 byte tokens and their first merges). Re-run after the fixtures change:
    scripts/fuzz-seeds.py [--fixtures DIR]
"""
import argparse
import base64
import glob
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(target, name, data):
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def st_read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        return header, 8 + n


def st_small(path, budget):
    """The smallest tensors of a safetensors file (their real bytes), up to `budget` data bytes."""
    header, data_start = st_read(path)
    meta = header.pop("__metadata__", None)
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
    out, blobs, at = {}, [], 0
    with open(path, "rb") as f:
        for name, t in items:
            b, e = t["data_offsets"]
            if at + (e - b) > budget:
                break
            f.seek(data_start + b)
            blobs.append(f.read(e - b))
            out[name] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [at, at + e - b]}
            at += e - b
    if meta is not None:
        out["__metadata__"] = meta
    h = json.dumps(out, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.environ.get("KVRUN_FIXTURES", os.path.join(ROOT, "..", "shared", "models")))
    fx = ap.parse_args().fixtures
    corpus = os.path.join(ROOT, "fuzz", "corpus")
    shutil.rmtree(corpus, ignore_errors=True)

    # safetensors: small real files, plus one with an unsupported dtype and an empty tensor.
    write("safetensors", "qwen1-small", st_small(os.path.join(fx, "tiny-qwen1", "model.safetensors"), 2048))
    write("safetensors", "qwen2-shard4-small", st_small(os.path.join(fx, "tiny-qwen2", "model-00004-of-00004.safetensors"), 2048))
    write("safetensors", "gptq-small", st_small(os.path.join(fx, "tiny-qwen2-gptq-int4", "model.safetensors"), 2048))
    write("safetensors", "reference-small", st_small(os.path.join(fx, "tiny-qwen1", "reference.safetensors"), 1024))
    h = json.dumps({"a": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
                    "b": {"dtype": "F16", "shape": [0, 3], "data_offsets": [16, 16]},
                    "c": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [16, 24]}}).encode()
    write("safetensors", "dtypes", struct.pack("<Q", len(h)) + h + bytes(range(24)))

    # sharded index: the fixture's, and a cut-down one.
    with open(os.path.join(fx, "tiny-qwen2", "model.safetensors.index.json")) as f:
        idx = f.read()
    write("safetensors_index", "tiny-qwen2", idx)
    j = json.loads(idx)
    j["weight_map"] = dict(list(j["weight_map"].items())[:6])
    write("safetensors_index", "tiny-qwen2-cut", json.dumps(j, indent=2))

    # config.json and generation_config.json of every fixture.
    seen = set()
    for path in sorted(glob.glob(os.path.join(fx, "*", "config.json")) +
                       glob.glob(os.path.join(fx, "*", "generation_config.json"))):
        data = open(path, "rb").read()
        if data in seen:
            continue
        seen.add(data)
        write("model_config", os.path.basename(os.path.dirname(path)) + "-" + os.path.basename(path), data)

    # Pipeline TOML: every example config; one whose first line is also a --set override.
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.toml")) +
                       glob.glob(os.path.join(ROOT, "configs", "bench", "*.toml"))):
        write("pipeline_toml", os.path.basename(path), open(path, "rb").read())
    write("pipeline_toml", "dotted-keys.toml",
          'backend.memory_limit="80GB"\ncache.type = "int8"\n[generation]\ntemperature = 0.7\n'
          'top_k = 40\ntop_p = 0.9\nstop = ["\\n\\n", "<|im_end|>"]\n[plugins]\npaths = ["a", "b"]\n')

    # tokenizer.json: the fixture's file with the 256 byte tokens and its first merges.
    with open(os.path.join(fx, "tiny-qwen2", "tokenizer.json")) as f:
        tj = json.load(f)
    vocab = tj["model"]["vocab"]
    inv = {i: t for t, i in vocab.items()}
    merges = tj["model"]["merges"][:48]
    keep = {inv[i] for i in range(256)}
    for a, b in merges:
        keep.update((a, b, a + b))
    tj["model"]["vocab"] = {t: i for t, i in vocab.items() if t in keep}
    tj["model"]["merges"] = merges
    write("tokenizer_json", "tiny-qwen2-cut.json", json.dumps(tj, ensure_ascii=False))
    tj["model"]["merges"] = [a + " " + b for a, b in merges]  # the older "a b" form
    tj["normalizer"] = None
    tj["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    write("tokenizer_json", "tiny-qwen2-cut-string-merges.json", json.dumps(tj, ensure_ascii=False))

    # qwen.tiktoken: the first ranks (all 256 bytes, then the first merged tokens).
    with open(os.path.join(fx, "tiny-qwen1", "qwen.tiktoken")) as f:
        lines = [l for l in f.read().splitlines() if l]
    ranked = sorted(lines, key=lambda l: int(l.split()[1]))
    write("qwen_tiktoken", "tiny-qwen1-cut", "\n".join(ranked[:300]) + "\n")
    assert all(len(base64.b64decode(l.split()[0])) == 1 for l in ranked[:256])

    # tokenizer_encode: first byte = (qwen1 ? 1 : 0) | (allow_special ? 2 : 0), then the text.
    n = 0
    for model, sel in (("tiny-qwen2", 0), ("tiny-qwen1", 1)):
        with open(os.path.join(fx, model, "tokenizer_cases.json")) as f:
            for case in json.load(f):
                write("tokenizer_encode", "case-%02d" % n, bytes([sel | 2]) + case["text"].encode())
                n += 1
    data = os.path.join(fx, "..", "data", "pystdlib-valid.txt")
    if os.path.exists(data):
        with open(data, "rb") as f:
            text = f.read(1 << 16)
        for i, sel in enumerate((0, 1, 2, 3)):
            chunk = text[i * 4096:i * 4096 + 700]
            write("tokenizer_encode", "pystdlib-%d" % i, bytes([sel]) + chunk.decode("utf-8", "ignore").encode())
    write("tokenizer_encode", "specials", bytes([2]) + "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\ncaf\u00e9 e\u0301 \u4e2d\u6587 \U0001F600<|im_end|>\n<|endoftext|>".encode())
    write("tokenizer_encode", "whitespace", bytes([3]) + b" \t\r\n\n    x  \n\t\t\r\n  ")


if __name__ == "__main__":
    main()

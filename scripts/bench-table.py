#!/usr/bin/env python3
"""Markdown tables from `kvrun bench --json` files, in the form docs/PERFORMANCE.md uses.

Usage: scripts/bench-table.py FILE.json [FILE.json ...]
Prints two tables over every row of every file, in the order given:
  speed   pipeline | batch | new | tok/s | ms/step (p90) | floor | % of floor | TTFT s
  memory  pipeline | batch | new | peak GiB (weights + KV + workspace)
tok/s is kvrun bench's own column (generated tokens over prefill + decode time), not the decode-only
rate the JSON also holds. A row that did not run (status "oom" or another failure) shows its status instead of numbers.
"""
import json
import sys

GIB = float(1 << 30)


def pipeline(doc):
    p = doc.get("pipeline", {})
    w = {"bf16": "bf16", "gptq": "GPTQ"}.get(p.get("weights", "?"), p.get("weights", "?"))
    name = doc.get("model", {}).get("name", "?")
    return f"{name} {w} + {p.get('cache', '?')} KV + {p.get('attention', '?')}"


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    speed, memory = [], []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print(f"bench-table: {path}: {e}", file=sys.stderr)
            return 1
        pipe = pipeline(doc)
        for r in doc.get("rows", []):
            head = f"| {pipe} | {r.get('batch')} | {r.get('new_tokens')} |"
            if r.get("status") != "ok":
                msg = r.get("status", "?") + (f": {r['message']}" if r.get("message") else "")
                speed.append(f"{head} {msg} | | | | |")
                memory.append(f"{head} {msg} |")
                continue
            speed.append(
                f"{head} {r['tokens_per_second']:.1f} | {r['ms_per_step_median']:.2f} "
                f"({r['ms_per_step_p90']:.2f}) | {r['floor_ms_per_step']:.2f} | {100 * r['floor_fraction']:.1f} | "
                f"{r['ttft_seconds']:.3f} |")
            m = r["memory"]
            memory.append(
                f"{head} {m['peak_total_bytes'] / GIB:.2f} ({m['weights_bytes'] / GIB:.2f} + "
                f"{m['kv_cache_bytes'] / GIB:.2f} + {m['workspace_bytes'] / GIB:.2f}) |")
    print("| pipeline | batch | new | tok/s | ms/step (p90) | floor ms | % of floor | TTFT s |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(speed))
    print()
    print("| pipeline | batch | new | peak GiB (weights + KV + workspace) |")
    print("|---|---|---|---|")
    print("\n".join(memory))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

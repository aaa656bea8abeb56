# Session 13, call G: a checkpoint whose layer 0 cannot be joined (tiny-qwen2 with layer 0's
# k_proj.weight's header dtype set to F16: the same bytes read as finite f16 values; made locally
# with a few lines of Python into .fixtures/models/tiny-qwen2-mixed) beside joined layers, on CUDA
# with graphs and on the CPU, both caches: generation runs and the greedy tokens are printed.
set -uo pipefail
exec > >(tee ${OUT:-.}/session13-g.log) 2>&1
k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
for cache in fp16 int8; do
  for dev in cpu cuda; do
    printf '[model]\npath = "%s"\n[backend]\ndevice = "%s"\n[cache]\ntype = "%s"\n[attention]\nkind = "naive"\n' "$KVRUN_FIXTURES/tiny-qwen2-mixed" $dev $cache > /tmp/m.toml
    echo "mixed $cache $dev: rc=$($k generate -c /tmp/m.toml --prompt-ids 1,2,3,4,5 --max-new-tokens 12 --json > /tmp/o.json 2>/tmp/e.log; echo $?) $(python3 -c "import json;print(json.load(open('/tmp/o.json'))['results'][0]['output_ids'])" 2>/dev/null) $(grep -c 'could not join' /tmp/e.log) note"
  done
done

date -u

set -uo pipefail
exec > >(tee ${OUT:-.}/session9-exp16.log) 2>&1
k=build-cuda/apps/kvrun
echo "commit $(cat .carry/commit)"; date -u
row() { local name=$1; shift; echo "$name | $(timeout 90 $k bench "$@" 2>&1 | grep -A1 -E '^ batch' | tail -1)"; }
C=configs/bench; I="-c $C/qwen7b-bf16-int8-naive.toml --prompt-tokens 32"
echo "name | batch new tok/s ms/step p90 floor_ms %floor ttft prefill weights kv workspace peak"
for r in 1 2; do
  row b64-algos8 $I --batch 64 --new-tokens 256
  KVRUN_CUDA_LT_TUNE_ALGOS=32 row b64-algos32 $I --batch 64 --new-tokens 256
done
for bb in 16 32; do
  row b$bb-algos8 $I --batch $bb --new-tokens 128
  KVRUN_CUDA_LT_TUNE_ALGOS=32 row b$bb-algos32 $I --batch $bb --new-tokens 128
done
KVRUN_CUDA_LT_TUNE_ALGOS=32 KVRUN_CUDA_LT_TUNE_LOG=1 timeout 90 $k bench $I --batch 64 --new-tokens 8 2>&1 | grep 'cuBLASLt plan m 64' | sed -E 's/; \[/\n  [/g' | head -80
date -u

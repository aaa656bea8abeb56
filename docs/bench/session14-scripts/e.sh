# Session 14, call E: the skinny GEMM with its weights through a 4-stage cp.async ring in shared
# memory (calls C/D streamed them into registers one chunk ahead: 4 KB in flight per warp and 12
# warps per SM — batch 64 ran at half cuBLAS's speed). Fixtures tiny-qwen2. The skinny and
# matmul_fused cases of test_cuda_ops; bench rows A/B; ncu's duration of each matmul kernel.
set -uo pipefail
exec > >(tee ${OUT:-.}/session14-e.log) 2>&1
b=build-cuda/tests; k=build-cuda/apps/kvrun; C=configs/bench
echo "commit $(cat .carry/commit)"; date -u
timeout 120 $b/test_cuda_ops -tc='*skinny*,*matmul_fused*' 2>&1 | tail -3
row() { local name=$1; shift; $k bench "$@" 2>&1 | awk -v n="$name" '/^ batch/{h=1;next} h&&NF>5{print n" | "$0}'; }
echo " row | batch new tok/s ms/step p90 floor %floor ttft prefill weights kv workspace peak"
B64="--batch 64 --prompt-tokens 32 --new-tokens 512"
KVRUN_CUDA_SKINNY=0 row "qwen-7b bf16 int8 naive skinny=0" -c $C/qwen7b-bf16-int8-naive.toml $B64
KVRUN_CUDA_SKINNY=1 row "qwen-7b bf16 int8 naive skinny=1" -c $C/qwen7b-bf16-int8-naive.toml $B64
for sp in 1 2 4; do
  KVRUN_CUDA_SKINNY=1 KVRUN_CUDA_SKINNY_SPLITS=$sp row "qwen-7b bf16 int8 naive skinny=1 splits=$sp" -c $C/qwen7b-bf16-int8-naive.toml $B64
done
KVRUN_CUDA_SKINNY=0 row "qwen-7b bf16 int8 naive skinny=0" -c $C/qwen7b-bf16-int8-naive.toml --batch 16,32 --prompt-tokens 32 --new-tokens 256
KVRUN_CUDA_SKINNY=1 row "qwen-7b bf16 int8 naive skinny=1" -c $C/qwen7b-bf16-int8-naive.toml --batch 16,32 --prompt-tokens 32 --new-tokens 256
prof() {  # $1 label, $2 kernel regex, rest: env
  local label=$1 re=$2; shift 2
  env "$@" timeout 150 ncu --clock-control none --graph-profiling node --kernel-name regex:"$re" --launch-skip 200 --launch-count 12 \
    --metrics gpu__time_duration.sum,launch__grid_size,dram__bytes_read.sum --csv --page raw --log-file /tmp/ncu.csv \
    $k bench -c $C/qwen7b-bf16-int8-naive.toml --batch 64 --prompt-tokens 32 --new-tokens 8 > /tmp/ncu.out 2>&1
  echo "== ncu $label rc=$?"; python3 - <<'PY'
import csv
rows=[r for r in csv.reader(open('/tmp/ncu.csv')) if r]
hdr=None
for r in rows:
    if 'Kernel Name' in r and hdr is None: hdr=r; continue
    if hdr and len(r)==len(hdr):
        d=dict(zip(hdr,r))
        try: t=float(d['gpu__time_duration.sum'].replace(',','')); by=float(d['dram__bytes_read.sum'].replace(',',''))
        except ValueError: continue
        print(f"{d['Kernel Name'][:70]:70s} grid {d['launch__grid_size']:>6s} time {t:10.1f} dram_read {by/1e6:8.2f} MB")
PY
  head -c 400 /tmp/ncu.csv | head -5
}
prof cublas 'nvjet|gemm|Kernel' KVRUN_CUDA_SKINNY=0
prof skinny 'skinny' KVRUN_CUDA_SKINNY=1
date -u
